"""ARCHITECTURE §4, SPEC §8: an engine and a worker killed mid-call lose nothing.

Fifty bridged calls are running when the engine and the worker die with SIGKILL.
After a restart every call ends, each bridged call is charged exactly once, the
wallet agrees with its ledger, and every committed event reaches the receiver.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Cli
from tests.support.receiver import Receiver
from tests.support.stack import count_calls, get_data, production_env, running_stack
from tests.support.waits import eventually_blocking, eventually_value

CALLS = 50
TERMINAL = "completed,failed,no-answer"


async def _wait_for_heartbeats(database_url: str, org_id: str) -> None:
    """Until the engine has renewed every call since it was bridged (a heartbeat every 5 s),
    so every call has talk time to bill up to that heartbeat."""
    conn = await asyncpg.connect(database_url)

    async def renewed() -> int:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM calls WHERE org_id = $1 AND heartbeat_at > bridged_at",
            org_id,
        )
        return count

    try:
        await eventually_value(
            renewed,
            lambda count: count == CALLS,
            what="every call renewed since its bridge",
            within=30,
            interval=0.2,
        )
    finally:
        await conn.close()


def _feed(base: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"after": after} if after else {})}
        body = httpx.get(f"{base}/v1/events", headers=auth, params=params, timeout=10).json()
        events += body["data"]
        if not body["meta"]["has_more"]:
            return events
        after = body["meta"]["next_cursor"]


async def _money(database_url: str, org_id: str) -> tuple[list[Any], int, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        charges = await conn.fetch(
            "SELECT call_sid, count(*) AS n, sum(amount) AS paise FROM ledger_entries "
            "WHERE org_id = $1 AND kind = 'call_charge' GROUP BY call_sid",
            org_id,
        )
        ledger_sum = await conn.fetchval(
            "SELECT sum(amount) FROM ledger_entries WHERE org_id = $1", org_id
        )
        wallet = await conn.fetchrow(
            "SELECT balance, reserved FROM wallets WHERE org_id = $1", org_id
        )
        return list(charges), int(ledger_sum), wallet
    finally:
        await conn.close()


class TestCrash:
    def test_sigkilled_engine_and_worker_lose_no_call_event_or_paisa(
        self,
        database_url: str,
        cli_settings_env: dict[str, str],
        tmp_path: Path,
        receiver: Receiver,
    ) -> None:
        if database_url.startswith("sqlite"):
            pytest.skip("production mode runs on PostgreSQL")
        env = production_env(
            cli_settings_env,
            MASKLINE_SIM_RING_SEC="0.2",
            MASKLINE_SIM_TALK_SEC="3600",
            MASKLINE_RATE_LIMIT_PER_MINUTE="100000",
            MASKLINE_CALL_STATUS_RATE_LIMIT_PER_MINUTE="100000",
            # The dead engine's calls are ended 6 s after its last heartbeat, not 30 s.
            MASKLINE_ENGINE_LEASE_SEC="6",
        )
        cli = Cli(env, tmp_path)
        org = cli.ok("org", "create", "crash-50", "--balance", "500")
        cli.ok("numbers", "add", "918077000001", "918077000002", "--org", "crash-50")
        cli.ok("webhook", "set", "--org", "crash-50", "--url", receiver.url)
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        roles = {"api": "api", "engine": "engine", "worker": "worker"}
        with running_stack(env, tmp_path, roles) as stack:
            base = stack.url("api")
            for n in range(CALLS):
                created = httpx.post(
                    f"{base}/v1/masking/calls",
                    headers=auth,
                    json={
                        "party_a": f"98765{n + 10:05d}",
                        "party_b": f"91234{n + 10:05d}",
                        "record": False,
                    },
                    timeout=10,
                )
                assert created.status_code == 201, created.text
            eventually_blocking(
                lambda: count_calls(base, auth, "in-progress"),
                lambda n: n == CALLS,
                what="every call in progress",
                within=60,
                interval=0.1,
            )
            # Talk time to bill, and deliveries part-way through.
            asyncio.run(_wait_for_heartbeats(database_url, org["id"]))
            eventually_blocking(
                lambda: len(receiver.succeeded()),
                lambda n: n >= CALLS * 2,
                what="two deliveries a call",
                within=60,
                interval=0.1,
            )
            stack.kill("engine")
            stack.kill("worker")
            stack.start("engine2", "engine")
            stack.start("worker2", "worker")

            # Leases last 6 s: the new engine's watchdog ends every call well within 60 s.
            eventually_blocking(
                lambda: count_calls(base, auth, TERMINAL),
                lambda n: n == CALLS,
                what="every call ended",
                within=60,
                interval=0.1,
            )
            calls = get_data(base, "/v1/masking/call-logs", auth, per_page=100)
            # Cursors are assigned after commit: wait for the feed to hold the final events.
            committed = eventually_blocking(
                lambda: _feed(base, auth),
                lambda es: len(es) >= CALLS * 5,
                what="five events a call in the feed",
                within=30,
                interval=0.1,
            )
            # Every committed event arrives at least once (receivers dedupe on webhook-id).
            ids = {e["id"] for e in committed}
            received = receiver.wait(
                lambda rs: {r.headers["webhook-id"] for r in rs if r.answered == 200} >= ids,
                within=60,
            )
            billing = get_data(base, "/v1/masking/billing", auth)

        assert len(calls) == CALLS
        assert {(c["status"], c["hangup_cause"]) for c in calls} == {
            ("completed", "SYSTEM_SHUTDOWN")
        }
        per_call = {
            c["call_sid"]: [e["event"] for e in committed if e["call_sid"] == c["call_sid"]]
            for c in calls
        }
        assert {tuple(events) for events in per_call.values()} == {
            (
                "call.initiated",
                "call.ringing",
                "call.answered",
                "call.bridged",
                "call.completed",
            )
        }
        delivered = {r.headers["webhook-id"] for r in received if r.answered == 200}
        assert delivered == ids

        charges, ledger_sum, wallet = asyncio.run(_money(database_url, org["id"]))
        # Each bridged call charged exactly once, for what its call object says it cost.
        assert {r["call_sid"]: r["n"] for r in charges} == {c["call_sid"]: 1 for c in calls}
        price = {c["call_sid"]: round(c["price"] * 100) for c in calls}
        assert {r["call_sid"]: -r["paise"] for r in charges} == price
        assert (wallet["balance"], wallet["reserved"]) == (ledger_sum, 0)
        assert billing["balance"] == wallet["balance"] / 100
