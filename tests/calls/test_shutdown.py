"""SPEC §8: on SIGTERM live calls end with SYSTEM_SHUTDOWN, bridged time billed, none left live."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from maskline.kit.clock import ScaledClock
from tests.calls.conftest import SPEED, call_settings
from tests.conftest import Cli
from tests.support.api import OrgHandle, running_api
from tests.support.calls import place, wait_for
from tests.support.server import running_server
from tests.support.waits import eventually_blocking


def _wait(base: str, auth: dict[str, str], sid: str, status: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{base}/v1/masking/calls/{sid}", headers=auth).json()[
            "data"
        ]
        return data

    return eventually_blocking(
        fetch,
        lambda data: data["status"] == status,
        what=f"call {sid} {status}",
        within=20,
        interval=0.05,
    )


class TestSigterm:
    def test_live_calls_end_with_system_shutdown_and_bridged_time_is_billed(
        self, cli: Cli, cli_settings_env: dict[str, str], tmp_path: Path
    ) -> None:
        org = cli.ok("org", "create", "shutdown", "--balance", "20")
        cli.ok("numbers", "add", "918070000001", "918070000002", "--org", "shutdown")
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        env = {
            **cli_settings_env,
            "MASKLINE_SIM_RING_SEC": "0.2",
            "MASKLINE_SIM_TALK_SEC": "3600",
        }
        with running_server(env, tmp_path) as server:
            base = server.base_url
            talking = httpx.post(
                f"{base}/v1/masking/calls",
                headers=auth,
                json={"party_a": "9876543210", "party_b": "9123456789"},
            ).json()["data"]
            ringing = httpx.post(
                f"{base}/v1/masking/calls",
                headers=auth,
                json={"party_a": "9876540000", "party_b": "9123456780", "ring_timeout_sec": 120},
            ).json()["data"]
            _wait(base, auth, talking["call_sid"], "in-progress")
            _wait(base, auth, ringing["call_sid"], "ringing")
            os.killpg(server.process.pid, signal.SIGTERM)
            # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
            assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)

        ended = cli.ok("calls", "show", talking["call_sid"])
        assert (ended["status"], ended["hangup_cause"], ended["hangup_by"]) == (
            "completed",
            "SYSTEM_SHUTDOWN",
            "system",
        )
        assert (ended["bill_duration_sec"], ended["price"]) == (60, 1.5)
        cancelled = cli.ok("calls", "show", ringing["call_sid"])
        assert (cancelled["status"], cancelled["hangup_cause"], cancelled["price"]) == (
            "failed",
            "SYSTEM_SHUTDOWN",
            0,
        )
        wallet = cli.ok("wallet", "show", "--org", "shutdown")
        assert (wallet["balance"], wallet["reserved"]) == (18.5, 0)

    def test_calls_show_of_an_unknown_call_fails(self, cli: Cli) -> None:
        result = cli("calls", "show", "d28be7cd-9840-4b23-9627-199f1ef81fc6")
        assert (result.code, result.stderr) == (
            1,
            "error: No call with call_sid 'd28be7cd-9840-4b23-9627-199f1ef81fc6'.\n",
        )


async def open_transactions(database_url: str) -> int:
    """Transactions other connections still hold on the database (0 when nobody does)."""
    if database_url.startswith("sqlite"):
        probe = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0)
        probe.isolation_level = None
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return 0
        except sqlite3.OperationalError:
            return 1
        finally:
            probe.close()
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state LIKE 'idle in transaction%'"
        )
        return count
    finally:
        await conn.close()


class TestStop:
    async def test_stopping_the_app_leaves_no_transaction_open(
        self, database_url: str, tmp_path: Path
    ) -> None:
        # Stopping while the engine and worker loops are busy must not leave a transaction
        # behind (a cancelled BEGIN IMMEDIATE kept SQLite locked for the next process).
        settings = call_settings(database_url, tmp_path / "data")
        for round_ in range(6):
            async with running_api(settings, clock=ScaledClock(SPEED)) as api:
                org = await api.make_org(f"stop-{round_}", balance="10", numbers=1)
                placed = await place(api, org, party_a="9876540001")
                ended = await wait_for(api, org, placed["call_sid"])
                assert ended["status"] == "failed"
            assert await open_transactions(database_url) == 0

    async def test_a_call_placed_as_the_app_stops_is_ended_not_left_half_run(
        self, database_url: str, tmp_path: Path
    ) -> None:
        # A claim in flight when the engine stops starts a runner; that runner must be
        # ended with the others, not left writing to a database already closed.
        settings = call_settings(database_url, tmp_path / "data")
        sids: list[tuple[OrgHandle, str]] = []
        for round_ in range(8):
            async with running_api(settings, clock=ScaledClock(SPEED)) as api:
                org = await api.make_org(f"stop-race-{round_}", balance="10", numbers=1)
                sids.append((org, (await place(api, org, record=False))["call_sid"]))
        async with running_api(settings, role="api") as reader:
            calls = [
                (await reader.client.get(f"/v1/masking/calls/{sid}", headers=org.auth)).json()[
                    "data"
                ]
                for org, sid in sids
            ]
        # Ended (failed before the bridge, completed after it, or, on a slow machine, run to
        # its natural end before the stop), or never claimed: left for the next engine to
        # dial. Never dialled and then abandoned.
        assert {(c["status"], c["hangup_cause"], c["started_at"] is None) for c in calls} <= {
            ("failed", "SYSTEM_SHUTDOWN", False),
            ("completed", "SYSTEM_SHUTDOWN", False),
            ("completed", "NORMAL_CLEARING", False),
            ("initiated", None, True),
        }
