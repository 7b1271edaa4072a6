"""SPEC §7 keys, as each API process remembers them: a key that authenticated is
trusted for at most 1 s of the process's clock, so a revoked or expired key stops
working everywhere within that second, and a valid key never fails because of it."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path

import httpx

from maskline.keys import service as keys
from maskline.keys.principals import CallTerms
from maskline.kit.clock import rfc3339
from maskline.orgs.service import OrgTerms, get_org
from maskline.settings import Settings
from tests.conftest import Cli
from tests.support.api import Api, ManualClock, running_api
from tests.support.server import running_server
from tests.support.statements import statements
from tests.support.waits import eventually_blocking

BILLING = "/v1/masking/billing"
KEY_LOOKUP = "FROM api_keys JOIN organisations"
KEY_TOUCH = "UPDATE api_keys SET last_used_at"


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["message"]


async def _get(api: Api, auth: dict[str, str]) -> httpx.Response:
    return await api.client.get(BILLING, headers=auth)


def _key_id(cli: Cli, org_name: str) -> str:
    (only,) = cli.ok("key", "list", "--org", org_name)["keys"]  # type: ignore[misc]
    key_id: str = only["id"]
    return key_id


def _frozen_api(settings: Settings, clock: ManualClock) -> AbstractAsyncContextManager[Api]:
    """The API role alone, on a clock that moves only when the test moves it."""
    return running_api(settings, clock=clock, role="api")


def _about_keys(statements: list[str]) -> list[str]:
    return [s for s in statements if KEY_LOOKUP in s or KEY_TOUCH in s]


class TestRevocationReachesEveryProcess:
    def test_a_key_revoked_by_the_cli_is_refused_by_a_running_server(
        self, cli: Cli, cli_settings_env: dict[str, str], tmp_path: Path
    ) -> None:
        org = cli.ok("org", "create", "cache-revoke-server", "--balance", "1")
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        with running_server(cli_settings_env, tmp_path) as server:

            def status() -> int:
                return httpx.get(f"{server.base_url}{BILLING}", headers=auth).status_code

            # Used once and again: the server now remembers the key.
            assert [status(), status()] == [200, 200]
            cli.ok("key", "revoke", _key_id(cli, "cache-revoke-server"))
            refused = eventually_blocking(
                lambda: httpx.get(f"{server.base_url}{BILLING}", headers=auth),
                lambda r: r.status_code != 200,
                what="the revoked key to be refused",
            )
        assert _error(refused) == (401, "The API key has been revoked.")

    async def test_a_remembered_key_is_trusted_for_one_second_of_the_apps_clock(
        self, settings: Settings, cli: Cli
    ) -> None:
        clock = ManualClock()
        async with _frozen_api(settings, clock) as api:
            org = await api.make_org("cache-revoke-clock")
            assert (await _get(api, org.auth)).status_code == 200
            await cli.ok_async("key", "revoke", await asyncio.to_thread(_key_id, cli, org.name))
            # Revoked in the database by another process; this one still trusts what it
            # looked up, for one second of its clock and not a moment longer.
            assert (await _get(api, org.auth)).status_code == 200
            clock.advance(0.5)
            assert (await _get(api, org.auth)).status_code == 200
            clock.advance(0.5)
            assert _error(await _get(api, org.auth)) == (401, "The API key has been revoked.")
            # Refusals are not remembered either way: asked again, the answer is the same.
            assert _error(await _get(api, org.auth)) == (401, "The API key has been revoked.")

    async def test_the_revoking_process_forgets_the_key_at_once(self, settings: Settings) -> None:
        clock = ManualClock()
        async with _frozen_api(settings, clock) as api:
            org = await api.make_org("cache-revoke-here")
            assert (await _get(api, org.auth)).status_code == 200
            async with api.runtime.db.write() as session:
                (key,) = await keys.list_keys(session, org.id)
                await keys.revoke_key(
                    session, key.id, now=clock.now(), principals=api.runtime.principals
                )
            assert _error(await _get(api, org.auth)) == (401, "The API key has been revoked.")


class TestExpiry:
    async def test_a_remembered_key_is_refused_the_moment_it_expires(
        self, settings: Settings
    ) -> None:
        clock = ManualClock()
        async with _frozen_api(settings, clock) as api:
            handle = await api.make_org("cache-expiry")
            async with api.runtime.db.write() as session:
                org = await get_org(session, handle.id)
                _, raw = await keys.create_key(
                    session, org, now=clock.now(), expires_at=clock.now() + timedelta(seconds=0.5)
                )
            auth = {"Authorization": f"Bearer {raw}"}
            assert (await _get(api, auth)).status_code == 200
            clock.advance(0.25)
            assert (await _get(api, auth)).status_code == 200
            # Half a second after it was looked up: remembered still, but expired.
            clock.advance(0.25)
            assert _error(await _get(api, auth)) == (401, "The API key has expired.")


class TestValidKeysKeepWorking:
    async def test_a_new_key_works_at_once_beside_a_remembered_one(
        self, settings: Settings
    ) -> None:
        clock = ManualClock()
        async with _frozen_api(settings, clock) as api:
            handle = await api.make_org("cache-rotation")
            assert (await _get(api, handle.auth)).status_code == 200
            async with api.runtime.db.write() as session:
                _, raw = await keys.create_key(
                    session, await get_org(session, handle.id), now=clock.now()
                )
            new = {"Authorization": f"Bearer {raw}"}
            assert (await _get(api, new)).status_code == 200
            assert (await _get(api, handle.auth)).status_code == 200

    async def test_a_key_works_on_every_request_across_reloads(self, settings: Settings) -> None:
        clock = ManualClock()
        async with _frozen_api(settings, clock) as api:
            org = await api.make_org("cache-steady")
            codes = []
            for _ in range(12):
                codes.append((await _get(api, org.auth)).status_code)
                clock.advance(0.25)
            assert codes == [200] * 12


class TestDatabaseWork:
    async def test_the_key_is_read_once_a_second_and_its_use_written_once_a_minute(
        self, settings: Settings
    ) -> None:
        clock = ManualClock()
        async with _frozen_api(settings, clock) as api:
            org = await api.make_org("cache-statements")
            with statements(api) as seen:
                for _ in range(5):
                    assert (await _get(api, org.auth)).status_code == 200
            lookup, touch = _about_keys(seen)
            assert KEY_LOOKUP in lookup
            assert KEY_TOUCH in touch
            with statements(api) as seen:
                clock.advance(1)
                for _ in range(3):
                    assert (await _get(api, org.auth)).status_code == 200
            # Looked up again after a second; its last use was written less than a minute ago.
            assert [KEY_LOOKUP in s for s in _about_keys(seen)] == [True]

    async def test_concurrent_first_requests_write_last_used_at_once(
        self, settings: Settings
    ) -> None:
        clock = ManualClock()
        async with _frozen_api(settings, clock) as api:
            org = await api.make_org("cache-touch-race")
            with statements(api) as seen:
                answers = await asyncio.gather(*(_get(api, org.auth) for _ in range(20)))
            assert [a.status_code for a in answers] == [200] * 20
            assert len([s for s in seen if KEY_TOUCH in s]) == 1

    async def test_concurrent_requests_of_a_key_not_remembered_look_it_up_once(
        self, settings: Settings
    ) -> None:
        clock = ManualClock()
        async with _frozen_api(settings, clock) as api:
            org = await api.make_org("cache-lookup-race")
            for _ in range(2):
                # Unknown first, then forgotten a second later: each time, 20 at once.
                with statements(api) as seen:
                    answers = await asyncio.gather(*(_get(api, org.auth) for _ in range(20)))
                assert [a.status_code for a in answers] == [200] * 20
                assert len([s for s in seen if KEY_LOOKUP in s]) == 1
                clock.advance(1)

    async def test_last_used_at_keeps_its_one_minute_resolution(
        self, settings: Settings, cli: Cli
    ) -> None:
        clock = ManualClock()
        async with _frozen_api(settings, clock) as api:
            org = await api.make_org("cache-last-used")
            started = clock.now()

            def last_used() -> object:
                (only,) = cli.ok("key", "list", "--org", org.name)["keys"]  # type: ignore[misc]
                return only["last_used_at"]

            assert (await _get(api, org.auth)).status_code == 200
            first = await asyncio.to_thread(last_used)
            clock.advance(59)
            assert (await _get(api, org.auth)).status_code == 200
            assert await asyncio.to_thread(last_used) == first
            clock.advance(1)
            assert (await _get(api, org.auth)).status_code == 200
            assert (first, await asyncio.to_thread(last_used)) == (
                rfc3339(started),
                rfc3339(started + timedelta(seconds=60)),
            )


class TestCallTerms:
    async def test_the_principal_carries_the_organisations_call_terms(
        self, settings: Settings
    ) -> None:
        clock = ManualClock()
        async with _frozen_api(settings, clock) as api:
            org = await api.make_org(
                "cache-terms", terms=OrgTerms(rate_paise=120, pulse_sec=30, max_live_calls=7)
            )
            assert (await _get(api, org.auth)).status_code == 200
            grant = api.runtime.principals.get(keys.hash_key(org.api_key))
            assert grant is not None
            assert grant.terms == CallTerms(
                is_sandbox=False, rate_paise=120, pulse_sec=30, max_live_calls=7
            )
