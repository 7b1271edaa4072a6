"""SPEC §8: every live call reaches a terminal state, whatever happened to its engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from maskline.billing.models import LedgerEntry
from maskline.calls.models import Call
from maskline.kit.clock import ScaledClock
from maskline.telephony.events import Leg
from maskline.telephony.sim.carrier import TraceEntry
from maskline.webhooks.models import CallEvent
from tests.calls.conftest import call_settings
from tests.calls.test_outcomes import trace
from tests.support.api import Api, ManualClock, ShiftedClock, running_api
from tests.support.calls import DEFAULT_LEASE, billing, place, wait_for
from tests.support.waits import eventually_value


async def _charges(api: Api, call_sid: str) -> list[int]:
    async with api.runtime.db.read() as session:
        return list(
            (
                await session.execute(
                    select(LedgerEntry.amount).where(
                        LedgerEntry.call_sid == call_sid, LedgerEntry.kind == "call_charge"
                    )
                )
            ).scalars()
        )


def _past_the_lease() -> ShiftedClock:
    """A clock on which the first engine's lease has lapsed, so it looks dead."""
    return ShiftedClock(ScaledClock(1), DEFAULT_LEASE + timedelta(seconds=1))


async def _set_hold(api: Api, call_sid: str, paise: int) -> None:
    async with api.runtime.db.write() as session:
        await session.execute(
            update(Call).where(Call.call_sid == call_sid).values(hold_paise=paise)
        )


async def _hung_up(api: Api, call_sid: str) -> list[TraceEntry]:
    """The sim's hang-ups of the call, once both legs are down (a deadline, not a sleep)."""
    return await eventually_value(
        lambda: [e for e in trace(api, call_sid) if e.action == "hangup"],
        lambda entries: {e.leg for e in entries} == {Leg.A, Leg.B},
        what=f"both legs of {call_sid} hung up",
        within=20,
        interval=0.05,
    )


def _seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


class TestMaxLifetime:
    @pytest.mark.slow
    async def test_a_call_older_than_the_lifetime_is_ended_and_its_talk_billed(
        self, own_database: str, tmp_path: Path
    ) -> None:
        # A clock that moves only when the test moves it: the call's times are exact,
        # however slow the machine (on a fast clock, a stall before the bridge ate into the
        # lifetime, and one past it left the call unclaimed). A database of its own: the
        # engine claims every waiting call it finds, other tests' too.
        settings = call_settings(
            own_database, tmp_path / "data", sim_talk_sec=3600, call_max_lifetime_sec=300
        )
        clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
        async with running_api(settings, clock=clock) as api:
            org = await api.make_org("lifetime", balance="10", numbers=1)
            # Unrecorded: it tests money and the end.
            placed = await place(api, org, record=False)
            # Each party rings 2 s (real ones too, as the clock stands still), then answers.
            bridged = await wait_for(api, org, placed["call_sid"], ("in-progress",))
            clock.advance(301)
            # The engine's watchdog, on its next round, finds the call past its lifetime.
            call = await wait_for(api, org, placed["call_sid"])
        assert (call["status"], call["hangup_cause"], call["hangup_by"]) == (
            "completed",
            "ALLOTTED_TIMEOUT",
            "system",
        )
        assert _seconds(bridged["bridged_at"], call["created_at"]) == 4
        assert _seconds(call["ended_at"], call["created_at"]) == 301
        # The talk from the bridge to the watchdog's round, billed in whole 60 s pulses at
        # Rs 1.5.
        assert call["talk_duration_sec"] == 297
        assert (call["bill_duration_sec"], call["price"]) == (300, 7.5)

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
    @pytest.mark.slow
    async def test_a_call_whose_engine_stopped_renewing_is_ended_by_another_engine(
        self, database_url: str, tmp_path: Path
    ) -> None:
        settings = call_settings(database_url, tmp_path / "data", sim_talk_sec=3600)
        async with running_api(settings) as first:
            org = await first.make_org("dead-engine", balance="10", numbers=1)
            # Unrecorded: the recording job would be due on the shifted clock, a lease from now.
            placed = await place(first, org, record=False)
            bridged = await wait_for(first, org, placed["call_sid"], ("in-progress",))
            # An engine whose clock is past the first engine's lease sees that engine as dead.
            later = _past_the_lease()
            async with running_api(settings, clock=later, role="engine"):
                call = await wait_for(first, org, placed["call_sid"])
            # The first engine was only thought dead: at its next heartbeat it sees the
            # call is not its own any more and drops both legs at once.
            assert [(e.leg, e.detail) for e in await _hung_up(first, placed["call_sid"])] == [
                (Leg.A, "SYSTEM_SHUTDOWN"),
                (Leg.B, "SYSTEM_SHUTDOWN"),
            ]
            assert await _charges(first, placed["call_sid"]) == [-150]
        assert (call["status"], call["hangup_cause"], call["hangup_by"]) == (
            "completed",
            "SYSTEM_SHUTDOWN",
            "system",
        )
        # Billed up to the dead engine's last heartbeat, which became ended_at.
        assert call["ended_at"] >= bridged["bridged_at"]
        assert (call["bill_duration_sec"], call["price"]) == (60, 1.5)

    @pytest.mark.slow
    async def test_a_call_that_cannot_be_ended_does_not_hold_back_the_others(
        self, database_url: str, tmp_path: Path
    ) -> None:
        settings = call_settings(database_url, tmp_path / "data", sim_talk_sec=3600)
        async with running_api(settings) as first:
            org = await first.make_org("dead-engine-bad-row", balance="10", numbers=1)
            broken = await place(first, org, record=False)
            sound = await place(
                first, org, party_a="9876543211", party_b="9123456788", record=False
            )
            for placed in (broken, sound):
                await wait_for(first, org, placed["call_sid"], ("in-progress",))
            # A hold larger than the wallet reserves cannot be settled: ending it fails.
            await _set_hold(first, broken["call_sid"], 10**9)
            later = _past_the_lease()
            async with running_api(settings, clock=later, role="engine"):
                ended = await wait_for(first, org, sound["call_sid"])
                stuck = await wait_for(first, org, broken["call_sid"], ("in-progress",))
            # Repaired, the call is ended by its own engine when that shuts down.
            await _set_hold(first, broken["call_sid"], 150)
        async with running_api(settings, role="api") as reader:
            repaired = await wait_for(reader, org, broken["call_sid"])
        assert (ended["status"], ended["hangup_cause"]) == ("completed", "SYSTEM_SHUTDOWN")
        assert stuck["status"] == "in-progress"
        assert (repaired["status"], repaired["hangup_cause"]) == ("completed", "SYSTEM_SHUTDOWN")


class TestTakenOver:
    async def test_a_step_of_a_call_another_engine_holds_writes_nothing_and_drops_the_legs(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """A step that moves no money is written from the engine's own copy of the row,
        with its batch: it still writes nothing once another engine holds the call."""
        settings = call_settings(database_url, tmp_path / "data", sim_ring_sec=3)
        async with running_api(settings) as api:
            org = await api.make_org("taken-over", balance="10", numbers=1)
            placed = await place(api, org, record=False)
            sid = placed["call_sid"]
            await wait_for(api, org, sid, ("ringing",))
            # As a watchdog that thought this engine dead would: the call is another's.
            async with api.runtime.db.write() as session:
                await session.execute(
                    update(Call).where(Call.call_sid == sid).values(engine_id="eng_another")
                )
            # A answers: the engine dials B at once, then cannot store the answer.
            hung_up = await _hung_up(api, sid)
            async with api.runtime.db.read() as session:
                row = (await session.execute(select(Call).where(Call.call_sid == sid))).scalar_one()
                events = list(
                    (
                        await session.execute(
                            select(CallEvent.event)
                            .where(CallEvent.call_sid == sid)
                            .order_by(CallEvent.sequence)
                        )
                    ).scalars()
                )
        assert [(e.leg, e.detail) for e in hung_up] == [
            (Leg.A, "SYSTEM_SHUTDOWN"),
            (Leg.B, "SYSTEM_SHUTDOWN"),
        ]
        assert (row.status, row.engine_id, row.event_seq, row.answered_at) == (
            "ringing",
            "eng_another",
            2,
            None,
        )
        assert events == ["call.initiated", "call.ringing"]
