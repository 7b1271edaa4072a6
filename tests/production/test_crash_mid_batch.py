"""ARCHITECTURE §3: the writer acknowledges nothing it has not committed.

Clients place calls, each under an Idempotency-Key, while the process that
accepts them is killed with SIGKILL mid-load. Every 201 a client saw is a call
that exists and ends; a request that got no answer, sent again with its key
to the restarted process, is answered with the call it made, if it made one,
or places it now: one call per key, never two, and the wallet agrees.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_SECRET_KEY, Cli
from tests.support.databases import KIND
from tests.support.stack import Stack, count_calls, get_data, production_env, running_stack
from tests.support.waits import eventually_blocking

REQUESTS = 120
SENDERS = 12
KILL_AFTER = 30  # acknowledged calls
TERMINAL = "completed,failed,no-answer"


def _body(n: int) -> dict[str, Any]:
    return {"party_a": f"98765{n + 10:05d}", "party_b": f"91234{n + 10:05d}", "record": False}


def _post(base: str, auth: dict[str, str], n: int) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/masking/calls",
        headers={**auth, "Idempotency-Key": f"crash-{n}"},
        json=_body(n),
        timeout=30,
    )


class _Load:
    """Requests sent from threads; the answer each one got, or None for no answer."""

    def __init__(self, base: str, auth: dict[str, str]) -> None:
        self.base, self.auth = base, auth
        self.answers: dict[int, httpx.Response | None] = {}
        self.acknowledged = threading.Semaphore(0)

    def send(self, n: int) -> None:
        try:
            response: httpx.Response | None = _post(self.base, self.auth, n)
        except httpx.TransportError:
            response = None
        self.answers[n] = response
        if response is not None and response.status_code == 201:
            self.acknowledged.release()


def _crash_under_load(stack: Stack, name: str, auth: dict[str, str]) -> _Load:
    load = _Load(stack.url(name), auth)
    with ThreadPoolExecutor(SENDERS) as senders:
        for n in range(REQUESTS):
            senders.submit(load.send, n)
        for _ in range(KILL_AFTER):
            assert load.acknowledged.acquire(timeout=60), "the load was not acknowledged"
        stack.kill(name)
    return load


@pytest.mark.slow
class TestKilledMidBatch:
    def test_every_acknowledged_call_exists_and_every_key_makes_one_call(
        self, own_database: str, tmp_path: Path
    ) -> None:
        base_env = {
            "MASKLINE_DATABASE_URL": own_database,
            "MASKLINE_SECRET_KEY": TEST_SECRET_KEY,
            "MASKLINE_DATA_DIR": str(tmp_path / "data"),
        }
        settings = {
            "MASKLINE_SIM_RING_SEC": "0.2",
            "MASKLINE_SIM_TALK_SEC": "1",
            "MASKLINE_RATE_LIMIT_PER_MINUTE": "100000",
            "MASKLINE_CALL_STATUS_RATE_LIMIT_PER_MINUTE": "100000",
            # The dead process's calls are ended 6 s after its last heartbeat.
            "MASKLINE_ENGINE_LEASE_SEC": "6",
        }
        if KIND == "postgresql":
            env = production_env(base_env, **settings)
            roles = {"api": "api", "engine": "engine", "worker": "worker"}
        else:
            env = {**base_env, **settings}
            roles = {"api": "all"}
        cli = Cli(env, tmp_path)
        # Up to all the requests live at once (the killed process's until the watchdog
        # ends them, and the retries): the cap of live calls is not what is tested here.
        org = cli.ok(
            "org", "create", "crash-batch", "--balance", "5000",
            "--max-live-calls", str(2 * REQUESTS),
        )  # fmt: skip
        cli.ok("numbers", "add", "918077100001", "918077100002", "--org", "crash-batch")
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        with running_stack(env, tmp_path, roles) as stack:
            load = _crash_under_load(stack, "api", auth)
            stack.start("api2", roles["api"])
            base = stack.url("api2")
            seen = {n: r for n, r in load.answers.items() if r is not None}
            assert {r.status_code for r in seen.values()} == {201}
            acknowledged = {n: r.json()["data"]["call_sid"] for n, r in seen.items()}
            unanswered = sorted(set(range(REQUESTS)) - set(seen))
            assert len(acknowledged) >= KILL_AFTER
            assert unanswered, "the kill came after every request was answered"

            # A request sent again with its key is answered with the call it made
            # (committed before the kill, the client never told) or places it now.
            retried = {n: _post(base, auth, n) for n in unanswered}
            assert {r.status_code for r in retried.values()} == {201}
            by_key = {
                **acknowledged,
                **{n: r.json()["data"]["call_sid"] for n, r in retried.items()},
            }
            # An acknowledged call's key gives the same call again.
            again = _post(base, auth, min(acknowledged))
            assert (again.status_code, again.json()["data"]["call_sid"]) == (
                201,
                acknowledged[min(acknowledged)],
            )

            # One call per key, every one of them stored, and every one ends.
            eventually_blocking(
                lambda: count_calls(base, auth, TERMINAL),
                lambda n: n == REQUESTS,
                what="every call ended",
                within=90,
                interval=0.2,
            )
            calls = get_data(base, "/v1/masking/call-logs", auth, per_page=100)
            calls += get_data(base, "/v1/masking/call-logs", auth, per_page=100, page=2)
            billing = get_data(base, "/v1/masking/billing", auth)

        assert sorted(c["call_sid"] for c in calls) == sorted(by_key.values())
        assert len(set(by_key.values())) == REQUESTS
        # Nothing stays held, and the balance is what the ledger says.
        assert billing["reserved"] == 0
        spent = sum(round(float(c["price"]) * 100) for c in calls)
        assert round(float(billing["balance"]) * 100) == 500_000 - spent
