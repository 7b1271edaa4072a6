"""SPEC §6: webhook URLs may only point to global unicast addresses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from maskline.settings import Settings
from tests.calls.conftest import call_settings
from tests.conftest import Cli
from tests.support.api import Api, OrgHandle, running_api

# A global address as a literal: checked without DNS (nothing here resolves names).
PUBLIC = "https://[2606:4700::1111]"
# 1,000 CJK characters in no repeating order (PostgreSQL compresses a repetitive one).
HAN = "".join(chr(0x4E00 + n * 7919 % 20_000) for n in range(1000))

REFUSED = [
    ("https://127.0.0.1/hook", "127.0.0.1"),
    ("https://[::1]/hook", "::1"),
    ("https://10.1.2.3/hook", "10.1.2.3"),
    ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
    ("https://100.64.0.1/hook", "100.64.0.1"),
    ("https://[::ffff:127.0.0.1]/hook", "::ffff:7f00:1"),
    ("https://[2002:7f00:1::]/hook", "2002:7f00:1::"),
    ("https://[64:ff9b::7f00:1]/hook", "64:ff9b::7f00:1"),
    ("https://224.0.0.1/hook", "224.0.0.1"),
    ("https://localhost/hook", "127.0.0.1"),
]


@pytest.fixture
async def strict_api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings: Settings = call_settings(
        database_url, tmp_path / "data", allow_private_webhooks=False
    )
    async with running_api(settings) as running:
        yield running


async def call_with_webhook_url(api: Api, url: str) -> tuple[OrgHandle, httpx.Response]:
    """A call placed by a new organisation, with ``url`` as its ``webhook_url``."""
    org = await api.make_org(f"ssrf-{uuid.uuid4().hex[:12]}", balance="10", numbers=1)
    response = await api.client.post(
        "/v1/masking/calls",
        headers=org.auth,
        json={"party_a": "9876543210", "party_b": "9123456789", "webhook_url": url},
    )
    return org, response


class TestRefusedDestinations:
    @pytest.mark.parametrize(("url", "address"), REFUSED)
    async def test_a_call_with_a_non_public_webhook_url_is_400(
        self, strict_api: Api, url: str, address: str
    ) -> None:
        org, response = await call_with_webhook_url(strict_api, url)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["message"] in (
            f"webhook_url must not point to a private or reserved address ({address}).",
            # localhost may resolve to ::1 first
            "webhook_url must not point to a private or reserved address (::1).",
        )
        assert (await strict_api.client.get("/v1/masking/billing", headers=org.auth)).json()[
            "data"
        ]["reserved"] == 0

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            (f"{PUBLIC}/{'a' * 2023}", "webhook_url must be at most 2048 characters."),
            # 1,026 characters, 3,026 bytes: past what PostgreSQL's index entries can hold.
            (
                f"{PUBLIC}/{HAN}",
                "webhook_url must be at most 2048 bytes in UTF-8.",
            ),
        ],
    )
    async def test_a_call_with_a_too_long_webhook_url_is_400(
        self, strict_api: Api, url: str, message: str
    ) -> None:
        _org, response = await call_with_webhook_url(strict_api, url)
        assert (response.status_code, response.json()["error"]) == (
            400,
            {"code": "invalid_request", "message": message},
        )

    @pytest.mark.parametrize(("url", "address"), REFUSED[:3])
    def test_the_cli_refuses_them_too(self, cli: Cli, url: str, address: str) -> None:
        name = f"ssrf-cli-{uuid.uuid4().hex[:12]}"
        cli.ok("org", "create", name)
        result = cli("webhook", "set", "--org", name, "--url", url)
        assert (result.code, result.stderr) == (
            1,
            f"error: webhook_url must not point to a private or reserved address ({address}).\n",
        )

    def test_a_global_address_is_accepted(self, cli: Cli) -> None:
        cli.ok("org", "create", "ssrf-global")
        # Stored only: no event is raised for this organisation, so nothing is sent.
        assert cli.ok(
            "webhook", "set", "--org", "ssrf-global", "--url", "https://[2606:4700::1111]/h"
        ) == {
            "url": "https://[2606:4700::1111]/h",
            "secret": None,
        }
