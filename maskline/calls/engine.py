"""The call engine: claims accepted calls (the job runner, ``worker/``), runs each through
the flow, talks to the carrier.

Every call has one runner task that takes events one at a time (carrier events,
timers, hang-up requests), steps the flow, issues the carrier commands at once
(B is dialled before anything is written), then writes the change, its money
and its events in one transaction (``runner.py``). The engine owns its calls
through a lease that its heartbeat renews; the watchdog (``watchdog.py``) ends
the calls of an engine that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from maskline.billing import talktime
from maskline.calls.flow import (
    CallState,
    HangupRequested,
    LifetimeExceeded,
    Shutdown,
    Start,
)
from maskline.calls.lifecycle import (
    LeaseLost,
    advance_call,
    end_call,
    pricing_of,
    state_of,
    step_call,
    store_grants,
)
from maskline.calls.models import LIVE_STATUSES, Call
from maskline.calls.runner import CallInfo, CallRunner
from maskline.calls.watchdog import Watchdog
from maskline.kit.clock import Clock
from maskline.kit.db import Database
from maskline.kit.ids import random_base62
from maskline.kit.loops import Loops
from maskline.kit.writer import WALLET_STAGE, defer_to_batch
from maskline.numbers import pool
from maskline.settings import Settings
from maskline.telephony.carrier import Carrier
from maskline.telephony.events import LegEvent
from maskline.telephony.media.recorder import Spool
from maskline.worker.lease import Lease, lease_rows, lease_statement
from maskline.worker.runner import JobRunner

log = logging.getLogger("maskline.engine")

CLAIM_BATCH = 50
# Claims woken faster than this (one wake-up per accepted call) are made together: a
# call waits at most this long more for its engine.
CLAIM_SETTLE_SEC = 0.01
# Hang-up requests are read when one is announced (``hangups_asked``) and at least this
# often, the safety net for an announcement lost (or not crossing processes).
HANGUP_POLL_SEC = 1.0
WATCHDOG_SEC = 5.0
# How often the leases' statistics are looked at (``pool.refresh_lease_statistics``).
STATISTICS_SEC = 2.0
SHUTDOWN_WAIT_SEC = 10.0


WakeHook = Callable[[], None]


class CallEngine:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: Settings,
        carriers: dict[str, Carrier],
        spool: Spool | None = None,
        on_events: WakeHook | None = None,
        on_connect: Callable[[float], None] | None = None,
    ) -> None:
        self.db = db
        self.spool = spool
        self.clock = clock
        self.settings = settings
        self.carriers = carriers
        self.engine_id = f"eng_{random_base62(12)}"
        self.lease = timedelta(seconds=settings.engine_lease_sec)
        self.connect_latencies: deque[float] = deque(maxlen=100_000)
        # Told each connect latency (A answered → B dialled), for the metrics.
        self.on_connect = on_connect
        self._on_events = on_events
        self._runners: dict[str, CallRunner] = {}
        # Each driven call's row as this engine last stored it (only its engine writes a
        # live call's state): a step is written from it, with no read of its own.
        self._rows: dict[str, Call] = {}
        # Calls claimed by a transaction whose batch has not yet answered: this engine's
        # already, though no runner drives them yet. A batch can take longer than a
        # lease, and the watchdog must not end them as orphans meanwhile.
        self._taking: frozenset[str] = frozenset()
        # Claims accepted calls and renews the leases of those this engine drives.
        self._claims = JobRunner(
            self,
            name="engine claim",
            db=db,
            clock=clock,
            log=log,
            owner=self.engine_id,
            lease=self.lease,
            batch=CLAIM_BATCH,
            # Every accepted call wakes the engine: at rate, one claim for several.
            settle=CLAIM_SETTLE_SEC,
            renew=self._heartbeat,
        )
        self._loops = Loops(clock, log)
        # Whether a hang-up has been asked for since the requests were last read, and
        # when (the event loop's time) they are read again regardless.
        self._hangups_due = True
        self._next_hangup_read = 0.0
        # The number of leases when their statistics were last refreshed.
        self._leases_counted = 0
        self._runner_tasks: set[asyncio.Task[None]] = set()
        self._sweeper = Watchdog(
            db=db,
            clock=clock,
            settings=settings,
            carriers=carriers,
            engine_id=self.engine_id,
            on_events=on_events,
        )

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        ready: list[Carrier] = []
        try:
            for carrier in self.carriers.values():
                await carrier.start(self._on_leg_event)
                ready.append(carrier)
        except BaseException:
            for carrier in ready:
                await carrier.close()
            raise
        await self._claims.start()
        self._loops.start(
            "engine watchdog", self._watchdog, min(WATCHDOG_SEC, self.lease.total_seconds() / 2)
        )
        if not self.db.is_sqlite:
            self._loops.start("engine lease statistics", self._lease_statistics, STATISTICS_SEC)

    async def stop(self) -> None:
        """Stop taking calls; after the grace period end live ones with SYSTEM_SHUTDOWN."""
        # A claim in flight has started its runners once this returns: they are ended
        # below (a runner started after Shutdown was posted would go on writing to a
        # database already disposed of). Hang-up requests are still carried out.
        await self._claims.stop_claiming()
        log.info(
            "engine stopping: no new calls; %d live calls may continue for up to %s s",
            len(self._runners),
            self.settings.shutdown_grace_sec,
        )
        if self._runners and self.settings.shutdown_grace_sec > 0:
            waiting = [r.done.wait() for r in self._runners.values()]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waiting), self.settings.shutdown_grace_sec)
        now = self.clock.now()
        for runner in list(self._runners.values()):
            runner.post(Shutdown(now))
        if self._runner_tasks:
            await asyncio.wait(set(self._runner_tasks), timeout=SHUTDOWN_WAIT_SEC)
        await asyncio.gather(self._claims.stop(), self._loops.stop())
        for carrier in self.carriers.values():
            await carrier.close()

    def wake(self) -> None:
        self._claims.wake()

    def hangups_asked(self) -> None:
        """A hang-up has been asked for (through the API, in any process)."""
        self._hangups_due = True
        self._claims.wake()

    def carrier_for(self, name: str) -> Carrier:
        return self.carriers[name]

    def forget(self, runner: CallRunner) -> None:
        self._runners.pop(runner.info.call_sid, None)
        self._rows.pop(runner.info.call_sid, None)

    def _on_leg_event(self, event: LegEvent) -> None:
        runner = self._runners.get(event.call_sid)
        if runner is not None:
            runner.post(event)

    # -- writing -------------------------------------------------------------

    async def write(
        self, runner: CallRunner, state: CallState, *, events: list[str], grant: bool
    ) -> None:
        """Store a runner's change (and grant credit) in one transaction, run again if
        PostgreSQL aborts it for a deadlock or the database is briefly unreachable or busy;
        the runner learns its credit once committed."""

        row = self._rows[runner.info.call_sid]

        async def store(session: AsyncSession) -> tuple[Call, talktime.Grant | None]:
            now = self.clock.now()
            sid = runner.info.call_sid
            # Another engine took it over, or a watchdog (this process's too, whose engine
            # id is ours) ended it while its lease had lapsed: LeaseLost, never twice.
            if not grant and not state.ended:
                # No money moves: written with the batch's other steps, from our row.
                call = await step_call(
                    session,
                    row,
                    state,
                    engine_id=self.engine_id,
                    lease_until=now + self.lease,
                    dialogs=runner.dialogs,
                    events=events,
                    public_url=self.settings.public_url,
                    now=now,
                )
                return call, None
            # Money moves: decided on the row as the database has it.
            if state.ended:
                ended = await end_call(
                    session,
                    sid,
                    state,
                    engine_id=self.engine_id,
                    dialogs=runner.dialogs,
                    events=events,
                    public_url=self.settings.public_url,
                    now=now,
                )
                if ended is None:
                    raise LeaseLost(sid)
                return ended, None
            advanced = await advance_call(
                session,
                sid,
                state,
                engine_id=self.engine_id,
                lease_until=now + self.lease,
                dialogs=runner.dialogs,
                events=events,
                public_url=self.settings.public_url,
                now=now,
            )
            if advanced is None:
                raise LeaseLost(sid)
            # Decided and held by the batch just before its commit (the wallet row is
            # locked for the commit alone), or here when there is no batch.
            granted = talktime.request_grant(
                advanced, pricing_of(advanced), now=now, write_call=store_grants
            )
            if not defer_to_batch(session, talktime.grant_calls, granted, stage=WALLET_STAGE):
                await talktime.grant_calls(await session.connection(), [granted])
            return advanced, granted

        stored, granted = await self.db.transaction(store, transient=True)
        if granted is not None:
            stored.granted_pulses = granted.total
            stored.hold_paise = granted.held + granted.extra
        self._rows[runner.info.call_sid] = stored
        if granted is not None:
            runner.granted(granted.total)
        if events and self._on_events is not None:
            self._on_events()

    # -- claiming (the job runner's queue), heartbeats, hang-up requests -----

    async def tend(self) -> None:
        # A stopping engine claims nothing new, but its live calls (in the shutdown grace)
        # still end when a hang-up is asked for.
        await self._deliver_hangup_requests()

    async def claim(self, session: AsyncSession, lease: Lease) -> Sequence[Call]:
        """Accepted calls that no engine has claimed, oldest first."""
        # A call accepted longer ago than its lifetime is not dialled now: the watchdog
        # ends it.
        oldest = lease.now - timedelta(seconds=self.settings.call_max_lifetime_sec)
        claimed = await session.execute(
            _claim_statement(),
            {
                "c_oldest": oldest,
                "c_limit": lease.limit,
                "c_owner": lease.owner,
                "c_until": lease.until,
                "c_now": lease.now,
            },
        )
        calls = list(claimed.scalars())
        self._taking = frozenset(call.call_sid for call in calls)
        return calls

    async def take(self, jobs: Sequence[Call], lease: Lease) -> None:
        """Start the claimed calls' runners (the claim is committed)."""
        for call in jobs:
            self._start_runner(call, lease.now)
        self._taking = frozenset()

    def _start_runner(self, call: Call, now: datetime) -> None:
        info = CallInfo(
            call_sid=call.call_sid,
            org_id=call.org_id,
            carrier=call.carrier,
            party_a=call.party_a,
            party_b=call.party_b,
            masked_number=call.masked_number,
            ring_timeout_sec=call.ring_timeout_sec,
            max_duration_sec=call.max_duration_sec,
            pulse_sec=call.pulse_sec,
            record=call.record,
            created_at=call.created_at,
        )
        runner = CallRunner(self, info, state_of(call))
        self._runners[info.call_sid] = runner
        self._rows[info.call_sid] = call
        if call.hangup_requested_at is not None:
            runner.hangup_posted = True
            runner.post(HangupRequested(now))
        else:
            runner.post(Start(now))
        task = asyncio.create_task(runner.run())
        self._runner_tasks.add(task)
        task.add_done_callback(self._runner_tasks.discard)

    async def _deliver_hangup_requests(self) -> None:
        """Post a hang-up to the runners of the calls whose hang-up has been asked for:
        read when one is announced, and every ``HANGUP_POLL_SEC``, not on every round
        (every accepted call wakes a round)."""
        if not self._runners:
            return
        now_sec = asyncio.get_running_loop().time()
        if not self._hangups_due and now_sec < self._next_hangup_read:
            return
        # Cleared before the read: one asked for during it is read at the next round.
        self._hangups_due = False
        self._next_hangup_read = now_sec + HANGUP_POLL_SEC
        async with self.db.read() as session:
            requested = (
                await session.execute(
                    select(Call.call_sid).where(
                        Call.engine_id == self.engine_id,
                        Call.hangup_requested_at.is_not(None),
                        Call.status.in_(LIVE_STATUSES),
                    )
                )
            ).scalars()
        now = self.clock.now()
        for sid in requested:
            runner = self._runners.get(sid)
            if runner is not None and not runner.hangup_posted:
                runner.hangup_posted = True
                runner.post(HangupRequested(now))

    async def _heartbeat(self) -> None:
        if not self._runners:
            return
        # Only calls with a runner: a call whose runner died must let its lease lapse, so
        # the watchdog ends it. Rows a runner is writing right now are skipped: its own
        # write renews the lease, and waiting for them could deadlock with its wallet update.
        driven = list(self._runners)

        async def renew(session: AsyncSession, lease: Lease) -> set[str]:
            renewed = await lease_rows(
                session,
                Call.id,
                where=[
                    Call.engine_id == lease.owner,
                    Call.call_sid.in_(driven),
                    Call.status.in_(LIVE_STATUSES),
                ],
                stamp=_renewal(lease),
                returning=[Call.call_sid],
            )
            return set(renewed.scalars())

        renewed = await self._claims.leased(renew)
        if missed := [sid for sid in driven if sid not in renewed]:
            await self._let_go_of_lost(missed)

    async def _let_go_of_lost(self, sids: list[str]) -> None:
        """Runners whose call another engine took over (its watchdog thought us dead)
        hang up their legs now, not at their next write."""
        async with self.db.read() as session:
            rows = await session.execute(
                select(Call.call_sid, Call.engine_id).where(Call.call_sid.in_(sids))
            )
            owners: dict[str, str | None] = {sid: owner for sid, owner in rows}
        for sid, owner in owners.items():
            runner = self._runners.get(sid)
            if runner is not None and owner != self.engine_id:
                runner.let_go()

    async def _watchdog(self) -> bool:
        """End this engine's calls past ``MASKLINE_CALL_MAX_LIFETIME_SEC`` through their
        runners, then sweep for calls no runner drives (SPEC §8)."""
        oldest = self.clock.now() - timedelta(seconds=self.settings.call_max_lifetime_sec)
        for runner in list(self._runners.values()):
            if runner.info.created_at < oldest and not runner.lifetime_posted:
                runner.lifetime_posted = True
                runner.post(LifetimeExceeded(self.clock.now()))
        return await self._sweeper.sweep(lambda: {*self._runners, *self._taking})

    async def _lease_statistics(self) -> bool:
        async with self.db.write() as session:
            self._leases_counted = await pool.refresh_lease_statistics(
                session, self._leases_counted
            )
        return False


@functools.cache
def _claim_statement() -> Any:
    """The claim of accepted calls (``lease_statement``), built once: run with the
    oldest creation time still dialled, the limit, the owner and the lease's terms."""
    calls = Call.metadata.tables[Call.__tablename__]
    return lease_statement(
        Call.id,
        where=[
            Call.status == "initiated",
            Call.engine_id.is_(None),
            Call.created_at >= bindparam("c_oldest", type_=calls.c.created_at.type),
        ],
        order_by=[Call.id],
        limit=bindparam("c_limit", type_=Integer()),
        stamp={
            Call.engine_id: bindparam("c_owner", type_=String()),
            Call.lease_expires_at: bindparam("c_until", type_=calls.c.lease_expires_at.type),
            Call.heartbeat_at: bindparam("c_now", type_=calls.c.heartbeat_at.type),
        },
        returning=[Call],
    ).execution_options(synchronize_session=False)


def _renewal(lease: Lease) -> dict[InstrumentedAttribute[Any], object]:
    """What a heartbeat writes on the calls this engine holds."""
    return {Call.lease_expires_at: lease.until, Call.heartbeat_at: lease.now}
