"""SPEC §7: per-key request budgets on a moving window, with RateLimit-* and Retry-After."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from maskline.keys import service as keys
from maskline.keys.service import generate_key
from maskline.orgs.service import OrgTerms
from maskline.settings import Settings
from tests.conftest import TEST_SECRET_KEY, Cli
from tests.support.api import Api, ManualClock, running_api
from tests.support.databases import KIND
from tests.support.server import running_server
from tests.support.waits import eventually

BILLING = "/v1/masking/billing"
REDIS = ("127.0.0.1", 6379)
# Redis databases no other test uses, one for each test that watches with MONITOR in
# each suite (the SQLite and PostgreSQL suites run side by side, and xdist may run the
# two tests at once), so that MONITOR sees only its own test's commands.
MONITORED_DBS = {"sqlite": (12, 11), "postgresql": (10, 9)}[KIND]


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
        created = await cli.ok_async("key", "create", "--org", org.name, "--rate-limit", "5")
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


def _quarter_past_a_second() -> ManualClock:
    """A clock standing 0.25 s into a whole second, so each header value is exact."""
    return ManualClock(datetime.now(UTC).replace(microsecond=250_000))


def _budget(response: httpx.Response) -> tuple[int, str, str, str, str | None]:
    headers = response.headers
    return (
        response.status_code,
        headers["RateLimit-Limit"],
        headers["RateLimit-Remaining"],
        headers["RateLimit-Reset"],
        headers.get("Retry-After"),
    )


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> str | None:
    """Where the budgets are counted: this process's memory, or Redis."""
    return None if request.param == "memory" else "redis://127.0.0.1:6379/0"


class TestTheWindow:
    """The window moves with the clock in whole seconds: a request leaves it at the end
    of the 60th second after its own began, and the headers say exactly when."""

    async def test_headers_and_refusals_follow_the_apps_clock(
        self, settings: Settings, store: str | None
    ) -> None:
        clock = _quarter_past_a_second()
        limited = settings.model_copy(update={"redis_url": store, "rate_limit_per_minute": 3})
        async with running_api(limited, clock=clock, role="api") as api:
            org = await api.make_org(f"rl-window-{uuid.uuid4().hex[:6]}")

            async def draw() -> tuple[int, str, str, str, str | None]:
                return _budget(await api.client.get(BILLING, headers=org.auth))

            at_0 = await draw()
            clock.advance(10)
            at_10 = await draw()
            clock.advance(20)
            at_30 = [await draw(), await draw()]
            # 29.5 s later the first request (0.25 s into second 0) is still in the window.
            clock.advance(29.5)
            at_59_75 = await draw()
            # At 60.0 its second has left the window: one request fits again.
            clock.advance(0.25)
            at_60 = [await draw(), await draw()]
        assert at_0 == (200, "3", "2", "60", None)
        assert at_10 == (200, "3", "1", "60", None)
        # Refused: one more fits when second 0 leaves, 29.75 s away (rounded up); the
        # budget is whole when second 30 leaves, 59.75 s away.
        assert at_30 == [(200, "3", "0", "60", None), (429, "3", "0", "60", "30")]
        assert at_59_75 == (429, "3", "0", "31", "1")
        assert at_60 == [(200, "3", "0", "60", None), (429, "3", "0", "60", "10")]


@contextmanager
def _monitoring() -> Iterator[list[str]]:
    """Every command Redis runs meanwhile (MONITOR), one line each as Redis prints it."""
    sock = socket.create_connection(REDIS)
    reader = sock.makefile("rb")
    sock.sendall(b"MONITOR\r\n")
    assert reader.readline() == b"+OK\r\n"
    lines: list[str] = []

    def read() -> None:
        for raw in reader:
            lines.append(raw.decode(errors="replace").rstrip("\r\n"))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield lines
    finally:
        sock.shutdown(socket.SHUT_RDWR)
        thread.join(timeout=5)
        reader.close()
        sock.close()


def _source(line: str) -> tuple[str, str]:
    """A MONITOR line's database and whether a client or a Lua script sent it:
    ``+1796245396.639374 [12 127.0.0.1:37614] "EVALSHA" ...``, ``... [12 lua] ...``."""
    db, _, sender = line.partition("[")[2].partition("]")[0].partition(" ")
    return db, "lua" if sender == "lua" else "client"


def _redis(*command: str) -> bytes:
    """One command on its own connection; its raw answer."""
    with socket.create_connection(REDIS) as sock:
        parts = [f"*{len(command)}\r\n".encode()]
        for arg in command:
            parts.append(f"${len(arg.encode())}\r\n{arg}\r\n".encode())
        sock.sendall(b"".join(parts))
        return sock.recv(65536)


class TestRedisBudgets:
    async def test_each_request_costs_one_round_trip_to_redis(self, settings: Settings) -> None:
        clock = _quarter_past_a_second()
        shared = settings.model_copy(
            update={
                "redis_url": f"redis://127.0.0.1:6379/{MONITORED_DBS[0]}",
                "rate_limit_per_minute": 3,
            }
        )
        bad = {"Authorization": f"Bearer {generate_key(test=False)}"}
        async with running_api(shared, clock=clock, role="api") as api:
            org = await api.make_org(f"rl-trips-{uuid.uuid4().hex[:6]}")
            async with api.runtime.db.read() as session:
                (key,) = await keys.list_keys(session, org.id)
            # Connected, and the script known to Redis, before counting.
            assert (await api.client.get(BILLING, headers=bad)).status_code == 401
            with _monitoring() as seen:
                answers = [await api.client.get(BILLING, headers=org.auth) for _ in range(4)]
                refused_key = await api.client.get(BILLING, headers=bad)
                marker = f"rl-trips-done-{uuid.uuid4().hex}"
                _redis("ECHO", marker)
                await eventually(lambda: any(marker in line for line in seen), what="the marker")
        assert [_budget(a) for a in answers] == [
            (200, "3", "2", "60", None),
            (200, "3", "1", "60", None),
            (200, "3", "0", "60", None),
            (429, "3", "0", "60", "60"),
        ]
        assert refused_key.status_code == 401
        # What clients sent to the database (the script's own commands show as "lua").
        ours = [line for line in seen if _source(line) == (str(MONITORED_DBS[0]), "client")]
        commands = [line.split("] ", 1)[1].split(" ")[0] for line in ours]
        # One EVALSHA per request (four on the key's budget, one on the address's budget
        # for failed authentication), and nothing else.
        assert commands == ['"EVALSHA"'] * 5, ours
        key_budget = f"maskline:budget:key:{key.id}:default"
        assert [key_budget in line for line in ours] == [True] * 4 + [False]
        assert "maskline:budget:auth-failure:127.0.0.1" in ours[4]

    async def test_concurrent_requests_draw_together_and_exactly(self, settings: Settings) -> None:
        """Draws asked for while a script call is out go in the next one: fewer round
        trips than requests, and each draw sees the ones before it (exactly the limit
        is let through, each with its own remaining count)."""
        clock = _quarter_past_a_second()
        shared = settings.model_copy(
            update={
                "redis_url": f"redis://127.0.0.1:6379/{MONITORED_DBS[1]}",
                "rate_limit_per_minute": 12,
            }
        )
        async with running_api(shared, clock=clock, role="api") as api:
            org = await api.make_org(f"rl-together-{uuid.uuid4().hex[:6]}")
            # Connected, and the script known to Redis, before counting.
            assert (await api.client.get(BILLING, headers=org.auth)).status_code == 200
            with _monitoring() as seen:
                answers = await asyncio.gather(
                    *(api.client.get(BILLING, headers=org.auth) for _ in range(20))
                )
                marker = f"rl-together-done-{uuid.uuid4().hex}"
                _redis("ECHO", marker)
                await eventually(lambda: any(marker in line for line in seen), what="the marker")
        budgets = sorted((_budget(a) for a in answers), key=lambda b: (b[0], -int(b[2])))
        assert (
            budgets
            == [(200, "12", str(left), "60", None) for left in range(10, -1, -1)]
            + [(429, "12", "0", "60", "60")] * 9
        )
        ours = [line for line in seen if _source(line) == (str(MONITORED_DBS[1]), "client")]
        evals = [line for line in ours if line.split("] ", 1)[1].startswith('"EVALSHA"')]
        assert len(evals) == len(ours)
        assert 1 <= len(evals) < 20

    async def test_a_redis_that_forgot_the_script_is_taught_it_again(
        self, settings: Settings
    ) -> None:
        clock = _quarter_past_a_second()
        shared = settings.model_copy(
            update={"redis_url": "redis://127.0.0.1:6379/0", "rate_limit_per_minute": 3}
        )
        async with running_api(shared, clock=clock, role="api") as api:
            org = await api.make_org(f"rl-noscript-{uuid.uuid4().hex[:6]}")
            first = await api.client.get(BILLING, headers=org.auth)
            # As after a restart of Redis: EVALSHA answers NOSCRIPT.
            assert _redis("SCRIPT", "FLUSH") == b"+OK\r\n"
            second = await api.client.get(BILLING, headers=org.auth)
        assert [_budget(first), _budget(second)] == [
            (200, "3", "2", "60", None),
            (200, "3", "1", "60", None),
        ]
