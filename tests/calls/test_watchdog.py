"""SPEC §8: every live call reaches a terminal state, whatever happened to its engine."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from maskline.kit.clock import ScaledClock
from tests.calls.conftest import SPEED, call_settings
from tests.support.api import ShiftedClock, running_api
from tests.support.calls import billing, place, wait_for


def _seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


class TestMaxLifetime:
    async def test_a_call_older_than_the_lifetime_is_ended_and_its_talk_billed(
        self, database_url: str, tmp_path: Path
    ) -> None:
        settings = call_settings(
            database_url, tmp_path / "data", sim_talk_sec=3600, call_max_lifetime_sec=100
        )
        async with running_api(settings, clock=ScaledClock(SPEED)) as api:
            org = await api.make_org("lifetime", balance="10", numbers=1)
            placed = await place(api, org)
            call = await wait_for(api, org, placed["call_sid"])
        assert (call["status"], call["hangup_cause"], call["hangup_by"]) == (
            "completed",
            "ALLOTTED_TIMEOUT",
            "system",
        )
        assert _seconds(call["ended_at"], call["created_at"]) >= 100
        assert (call["bill_duration_sec"], call["price"]) == (120, 3)

    async def test_a_call_no_engine_claimed_within_the_lifetime_is_failed_not_dialled(
        self, database_url: str, tmp_path: Path
    ) -> None:
        settings = call_settings(database_url, tmp_path / "data", call_max_lifetime_sec=60)
        async with running_api(settings, role="api") as api:
            org = await api.make_org("lifetime-unclaimed", balance="10", numbers=1)
            placed = await place(api, org)
            # An engine that starts 61 s later must not ring party A for this call.
            later = ShiftedClock(ScaledClock(1), timedelta(seconds=61))
            async with running_api(settings, clock=later, role="engine"):
                call = await wait_for(api, org, placed["call_sid"])
            assert (call["status"], call["hangup_cause"], call["started_at"]) == (
                "failed",
                "ALLOTTED_TIMEOUT",
                None,
            )
            assert (call["price"], (await billing(api, org))["reserved"]) == (0, 0)


class TestDeadEngine:
    async def test_a_call_whose_engine_stopped_renewing_is_ended_by_another_engine(
        self, database_url: str, tmp_path: Path
    ) -> None:
        settings = call_settings(database_url, tmp_path / "data", sim_talk_sec=3600)
        async with running_api(settings) as first:
            org = await first.make_org("dead-engine", balance="10", numbers=1)
            # Unrecorded: the recording job would be due on the shifted clock, 31 s from now.
            placed = await place(first, org, record=False)
            bridged = await wait_for(first, org, placed["call_sid"], ("in-progress",))
            # An engine whose clock is past the first engine's lease sees that engine as dead.
            later = ShiftedClock(ScaledClock(1), timedelta(seconds=31))
            async with running_api(settings, clock=later, role="engine"):
                call = await wait_for(first, org, placed["call_sid"])
        assert (call["status"], call["hangup_cause"], call["hangup_by"]) == (
            "completed",
            "SYSTEM_SHUTDOWN",
            "system",
        )
        # Billed up to the dead engine's last heartbeat, which became ended_at.
        assert call["ended_at"] >= bridged["bridged_at"]
        assert (call["bill_duration_sec"], call["price"]) == (60, 1.5)
