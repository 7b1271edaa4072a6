"""SPEC §7: per-key request budgets on a moving window, with RateLimit-* and Retry-After."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from maskline.keys.service import generate_key
from maskline.orgs.service import OrgTerms
from maskline.settings import Settings
from tests.conftest import TEST_SECRET_KEY, Cli
from tests.support.api import Api, running_api
from tests.support.server import running_server

BILLING = "/v1/masking/billing"


async def _spend(client: httpx.AsyncClient, auth: dict[str, str], count: int) -> list[int]:
    return [(await client.get(BILLING, headers=auth)).status_code for _ in range(count)]


class TestKeyBudget:
    async def test_every_authenticated_response_carries_the_budget(self, api: Api) -> None:
        org = await api.make_org("rl-headers")
        first = await api.client.get(BILLING, headers=org.auth)
        second = await api.client.get(BILLING, headers=org.auth)
        assert first.headers["RateLimit-Limit"] == "100"
        assert first.headers["RateLimit-Remaining"] == "99"
        assert second.headers["RateLimit-Remaining"] == "98"
        assert second.headers["RateLimit-Reset"] == "60"

    async def test_the_101st_request_in_a_minute_is_429(self, api: Api) -> None:
        org = await api.make_org("rl-default")
        assert await _spend(api.client, org.auth, 100) == [200] * 100
        refused = await api.client.get(BILLING, headers=org.auth)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["RateLimit-Limit"] == "100"
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60

    async def test_errors_after_authentication_also_carry_the_budget(self, api: Api) -> None:
        org = await api.make_org("rl-on-errors")
        response = await api.client.get("/v1/masking/billing/invoices?per_page=0", headers=org.auth)
        assert response.status_code == 400
        assert response.headers["RateLimit-Remaining"] == "99"

    async def test_a_per_key_override_sets_the_budget(self, api: Api, cli: Cli) -> None:
        org = await api.make_org("rl-override")
        created = cli.ok("key", "create", "--org", org.name, "--rate-limit", "5")
        auth = {"Authorization": f"Bearer {created['api_key']}"}
        assert await _spend(api.client, auth, 6) == [200] * 5 + [429]
        # The organisation's other key has its own, default budget.
        ok = await api.client.get(BILLING, headers=org.auth)
        assert ok.status_code == 200
        assert ok.headers["RateLimit-Limit"] == "100"

    async def test_failed_authentication_is_limited_per_address(
        self, database_url: str, tmp_path: object
    ) -> None:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=database_url,
            secret_key=TEST_SECRET_KEY,
            data_dir=str(tmp_path),
            auth_failure_limit_per_minute=3,
        )
        bad = {"Authorization": f"Bearer {generate_key(test=False)}"}
        async with running_api(settings) as api:
            codes = await _spend(api.client, bad, 4)
        assert codes == [401, 401, 401, 429]


class TestSharedBudget:
    async def test_two_api_processes_share_one_budget_through_redis(
        self, settings: Settings
    ) -> None:
        shared = settings.model_copy(
            update={"redis_url": "redis://127.0.0.1:6379/0", "rate_limit_per_minute": 100}
        )
        async with running_api(shared) as one, running_api(shared) as two:
            org = await one.make_org(f"rl-redis-{uuid.uuid4().hex[:6]}", terms=OrgTerms())
            assert await _spend(one.client, org.auth, 60) == [200] * 60
            assert await _spend(two.client, org.auth, 40) == [200] * 40
            refused = await two.client.get(BILLING, headers=org.auth)
            assert refused.status_code == 429
            assert (await one.client.get(BILLING, headers=org.auth)).status_code == 429


class TestFailedAuthenticationBehindProxies:
    """SPEC §10 ``MASKLINE_TRUSTED_PROXIES``: only a trusted proxy's ``X-Forwarded-For``
    gives the client address that failed authentication is limited by."""

    @staticmethod
    def _codes(base: str, forwarded_for: list[str]) -> list[int]:
        bad = {"Authorization": f"Bearer {generate_key(test=False)}"}
        return [
            httpx.get(
                f"{base}{BILLING}", headers={**bad, "X-Forwarded-For": address}, timeout=10
            ).status_code
            for address in forwarded_for
        ]

    def test_from_an_untrusted_client_the_header_is_ignored(
        self, cli_settings_env: dict[str, str], tmp_path: Path
    ) -> None:
        env = {**cli_settings_env, "MASKLINE_AUTH_FAILURE_LIMIT_PER_MINUTE": "3"}
        with running_server(env, tmp_path) as server:
            codes = self._codes(server.base_url, [f"203.0.113.{n}" for n in range(1, 5)])
        # All four came from 127.0.0.1, whatever they claimed.
        assert codes == [401, 401, 401, 429]

    def test_an_untrusted_proxy_is_ignored_too(
        self, cli_settings_env: dict[str, str], tmp_path: Path
    ) -> None:
        env = {
            **cli_settings_env,
            "MASKLINE_AUTH_FAILURE_LIMIT_PER_MINUTE": "3",
            "MASKLINE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
        }
        with running_server(env, tmp_path) as server:
            codes = self._codes(server.base_url, [f"203.0.113.{n}" for n in range(1, 5)])
        assert codes == [401, 401, 401, 429]

    def test_from_a_trusted_proxy_the_header_gives_the_client(
        self, cli_settings_env: dict[str, str], tmp_path: Path
    ) -> None:
        env = {
            **cli_settings_env,
            "MASKLINE_AUTH_FAILURE_LIMIT_PER_MINUTE": "3",
            "MASKLINE_TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.0/8",
        }
        with running_server(env, tmp_path) as server:
            others = self._codes(server.base_url, [f"203.0.113.{n}" for n in range(1, 5)])
            one = self._codes(server.base_url, ["198.51.100.9"] * 4)
        # Four clients, each with its own budget; one client, limited after three.
        assert (others, one) == ([401, 401, 401, 401], [401, 401, 401, 429])
