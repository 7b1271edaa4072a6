"""Bugs the adversarial suites found, pinned one by one (SPEC §1)."""

from __future__ import annotations

import pytest

from tests.support.api import Api


class TestMethodNotAllowed:
    async def test_allow_names_every_method_of_a_path_served_by_several_routes(
        self, api: Api
    ) -> None:
        org = await api.make_org("found-allow")
        response = await api.client.put(
            "/v1/masking/calls/00000000-0000-4000-8000-000000000000/recording", headers=org.auth
        )
        assert response.status_code == 405
        assert response.json() == {
            "error": {
                "code": "method_not_allowed",
                "message": "PUT is not allowed on this resource.",
            }
        }
        assert response.headers["Allow"] == "DELETE, GET"


class TestRepeatedQueryParameters:
    @pytest.mark.parametrize(
        ("path", "name"),
        [
            ("/v1/webhooks/deliveries?call_sid=a&call_sid=b", "call_sid"),
            ("/v1/masking/call-logs?status=failed&status=completed", "status"),
            ("/v1/masking/billing/invoices?page=1&page=2", "page"),
        ],
    )
    async def test_a_repeated_parameter_is_400_not_silently_the_last(
        self, api: Api, path: str, name: str
    ) -> None:
        org = await api.make_org(f"found-repeated-{name}")
        response = await api.client.get(path, headers=org.auth)
        assert response.status_code == 400
        assert response.json() == {
            "error": {"code": "invalid_request", "message": f"{name} must be given once."}
        }

    async def test_the_key_is_checked_first(self, api: Api) -> None:
        response = await api.client.get("/v1/webhooks/deliveries?event=a&event=b")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    async def test_on_the_signed_recording_url_too(self, api: Api) -> None:
        response = await api.client.get(
            "/v1/masking/recordings/00000000-0000-4000-8000-000000000000.mp3"
            "?expires=1&expires=2&signature=x"
        )
        assert response.status_code == 400
        assert response.json() == {
            "error": {"code": "invalid_request", "message": "expires must be given once."}
        }
