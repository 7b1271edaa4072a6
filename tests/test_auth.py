"""SPEC §1 and §7: Bearer keys, 401 for every bad key, scoping to the key's organisation."""

from __future__ import annotations

from datetime import timedelta

from maskline.keys.service import generate_key
from maskline.kit.clock import SystemClock
from maskline.settings import Settings
from tests.conftest import Cli
from tests.support.api import Api, ShiftedClock, running_api
from tests.support.waits import eventually_value

BILLING = "/v1/masking/billing"


async def _unauthorized(api: Api, headers: dict[str, str], message: str) -> None:
    response = await api.client.get(BILLING, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "unauthorized", "message": message}}
    assert "RateLimit-Limit" not in response.headers


class TestAuthentication:
    async def test_missing_key_is_401(self, api: Api) -> None:
        await _unauthorized(api, {}, "Missing API key: send 'Authorization: Bearer <key>'.")

    async def test_other_scheme_is_401(self, api: Api) -> None:
        await _unauthorized(
            api,
            {"Authorization": "Basic dXNlcjpwYXNz"},
            "The Authorization header must be 'Bearer <key>'.",
        )

    async def test_malformed_key_is_401(self, api: Api) -> None:
        await _unauthorized(
            api, {"Authorization": "Bearer vp_live_short"}, "The API key is malformed."
        )

    async def test_key_with_wrong_checksum_is_401(self, api: Api) -> None:
        org = await api.make_org("auth-checksum")
        tampered = org.api_key[:-1] + ("A" if org.api_key[-1] != "A" else "B")
        await _unauthorized(
            api, {"Authorization": f"Bearer {tampered}"}, "The API key is malformed."
        )

    async def test_unknown_key_is_401(self, api: Api) -> None:
        await _unauthorized(
            api,
            {"Authorization": f"Bearer {generate_key(test=False)}"},
            "The API key is not valid.",
        )

    async def test_valid_key_reads_billing(self, api: Api) -> None:
        org = await api.make_org("auth-valid", balance="250")
        response = await api.client.get(BILLING, headers=org.auth)
        assert response.status_code == 200
        assert response.json()["data"]["balance"] == 250
        assert org.api_key.startswith("vp_live_")

    async def test_sandbox_org_gets_test_keys(self, api: Api) -> None:
        org = await api.make_org("auth-sandbox", sandbox=True)
        assert org.api_key.startswith("vp_test_")
        assert (await api.client.get(BILLING, headers=org.auth)).status_code == 200


class TestKeyLifecycle:
    async def test_two_keys_work_and_revoking_one_leaves_the_other(
        self, api: Api, cli: Cli
    ) -> None:
        org = await api.make_org("auth-rotation", balance="10")
        second = await cli.ok_async("key", "create", "--org", org.name)
        second_auth = {"Authorization": f"Bearer {second['api_key']}"}
        assert (await api.client.get(BILLING, headers=org.auth)).status_code == 200
        assert (await api.client.get(BILLING, headers=second_auth)).status_code == 200

        listed = (await cli.ok_async("key", "list", "--org", org.id))["keys"]
        assert isinstance(listed, list)
        first_id = next(k["id"] for k in listed if k["id"] != second["id"])
        revoked = await cli.ok_async("key", "revoke", first_id)
        assert revoked["id"] == first_id
        assert isinstance(revoked["revoked_at"], str)

        # Every API process stops accepting it within a second (it remembers keys that
        # authenticated for that long).
        refused = await eventually_value(
            lambda: api.client.get(BILLING, headers=org.auth),
            lambda r: r.status_code != 200,
            what="the revoked key to be refused",
        )
        assert refused.status_code == 401
        assert refused.json() == {
            "error": {"code": "unauthorized", "message": "The API key has been revoked."}
        }
        assert (await api.client.get(BILLING, headers=second_auth)).status_code == 200

    async def test_expired_key_is_401(self, api: Api, cli: Cli, settings: Settings) -> None:
        org = await api.make_org("auth-expiry")
        created = await cli.ok_async("key", "create", "--org", org.name, "--expires-in", "1")
        auth = {"Authorization": f"Bearer {created['api_key']}"}
        assert (await api.client.get(BILLING, headers=auth)).status_code == 200
        later = ShiftedClock(SystemClock(), timedelta(days=1, seconds=5))
        async with running_api(settings, clock=later) as future:
            response = await future.client.get(BILLING, headers=auth)
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "The API key has expired."

    async def test_use_is_recorded_as_last_used_at(self, api: Api, cli: Cli) -> None:
        org = await api.make_org("auth-last-used")
        (before,) = (await cli.ok_async("key", "list", "--org", org.name))["keys"]  # type: ignore[misc]
        assert before["last_used_at"] is None
        assert before["prefix"] == org.api_key[:12]
        assert (await api.client.get(BILLING, headers=org.auth)).status_code == 200
        (after,) = (await cli.ok_async("key", "list", "--org", org.name))["keys"]  # type: ignore[misc]
        assert isinstance(after["last_used_at"], str)


class TestOrganisationIsolation:
    async def test_each_key_sees_only_its_own_wallet_and_invoices(self, api: Api, cli: Cli) -> None:
        first = await api.make_org("iso-first", balance="100")
        second = await api.make_org("iso-second", balance="7")
        (await cli.ok_async("wallet", "topup", "--org", first.name, "50"))

        one = (await api.client.get(BILLING, headers=first.auth)).json()["data"]
        two = (await api.client.get(BILLING, headers=second.auth)).json()["data"]
        assert (one["balance"], two["balance"]) == (150, 7)

        mine = await api.client.get("/v1/masking/billing/invoices", headers=first.auth)
        theirs = await api.client.get("/v1/masking/billing/invoices", headers=second.auth)
        assert [i["org_id"] for i in mine.json()["data"]] == [first.id]
        assert theirs.json() == {
            "data": [],
            "meta": {
                "page": 1,
                "per_page": 20,
                "total": 0,
                "total_pages": 0,
                "has_more": False,
                "next_cursor": None,
                "total_capped": False,
            },
        }
