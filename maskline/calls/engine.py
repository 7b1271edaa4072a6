"""The call engine: claims accepted calls, runs each through the flow, talks to the carrier.

Every call has one runner task that takes events one at a time (carrier events,
timers, hang-up requests), steps the flow, issues the carrier commands at once
(B is dialled before anything is written), then writes the change, its money
and its events in one transaction. The engine owns its calls through a lease
that its heartbeat renews; the watchdog ends the calls of an engine that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing import talktime
from maskline.calls.flow import (
    BridgeLegs,
    CallState,
    Command,
    CreditExhausted,
    DialLeg,
    DurationReached,
    Emit,
    Event,
    Finish,
    HangupLeg,
    HangupRequested,
    LifetimeExceeded,
    RingTimeout,
    Shutdown,
    Start,
    StartCredit,
    StartRingTimer,
    step,
)
from maskline.calls.lifecycle import apply_state, load_call, pricing_of, state_of
from maskline.calls.models import LIVE_STATUSES, Call
from maskline.kit.clock import Clock, sleep_until
from maskline.kit.db import Database
from maskline.kit.ids import random_base62
from maskline.kit.logging import call_sid_var
from maskline.kit.loops import Loops
from maskline.settings import Settings
from maskline.telephony.carrier import Carrier, Dial, MediaSink
from maskline.telephony.events import Cause, Dialog, Leg, LegAnswered, LegEvent
from maskline.telephony.media.recorder import Spool

log = logging.getLogger("maskline.engine")

CLAIM_BATCH = 50
POLL_SEC = 1.0
LEASE = timedelta(seconds=30)
HEARTBEAT_SEC = 5.0
WATCHDOG_SEC = 5.0
CREDIT_LEAD = timedelta(seconds=10)
WRITE_ATTEMPTS = 3
SHUTDOWN_WAIT_SEC = 10.0


class LeaseLost(Exception):
    """Another engine took the call over (our lease had lapsed): stop touching it."""


@dataclass(frozen=True, slots=True)
class _RenewCredit:
    """Time to ask the wallet for the next chunk of talk time."""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What a runner needs to know about its call, fixed at acceptance."""

    call_sid: str
    org_id: str
    carrier: str
    party_a: str
    party_b: str
    masked_number: str
    ring_timeout_sec: int
    max_duration_sec: int | None
    pulse_sec: int
    record: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _Write:
    """A change for the call's writer: the state to store and what comes with it."""

    state: CallState
    events: list[str]
    grant: bool
    finish: bool


class CallRunner:
    """Steps one call's flow the moment an event arrives and issues its carrier commands at
    once; a writer task then stores the changes in order. So B is dialled without waiting
    for any database write, however busy the database is."""

    def __init__(self, engine: CallEngine, info: CallInfo, state: CallState) -> None:
        self.engine = engine
        self.info = info
        self.state = state
        self.writes: asyncio.Queue[_Write | _RenewCredit] = asyncio.Queue()
        self.done = asyncio.Event()
        self.hangup_posted = False
        self.lifetime_posted = False
        self._timers: set[asyncio.Task[None]] = set()
        self._granted = 0
        self._credit_end: datetime | None = None
        # Confirmed SIP dialogs by leg, stored with the next write (SPEC §8).
        self.dialogs: dict[str, dict[str, object]] = {}

    def post(self, event: Event | _RenewCredit) -> None:
        if isinstance(event, _RenewCredit):
            self.writes.put_nowait(event)
            return
        if isinstance(event, LegAnswered) and event.dialog is not None:
            self.dialogs = {**self.dialogs, event.leg.value: event.dialog.to_json()}
        arrived = time.perf_counter()
        new, commands = step(self.state, event)
        if new is self.state:
            return
        self.state = new
        self._carry_out(commands, arrived)
        self.writes.put_nowait(
            _Write(
                state=new,
                events=[c.event for c in commands if isinstance(c, Emit)],
                grant=any(isinstance(c, StartCredit) for c in commands),
                finish=any(isinstance(c, Finish) for c in commands),
            )
        )

    def _carry_out(self, commands: list[Command], arrived: float) -> None:
        carrier = self.engine.carrier_for(self.info.carrier)
        sid = self.info.call_sid
        for command in commands:
            if isinstance(command, DialLeg):
                number = self.info.party_a if command.leg is Leg.A else self.info.party_b
                carrier.dial(Dial(sid, command.leg, number, self.info.masked_number, command.at))
                if command.leg is Leg.B:
                    latency = time.perf_counter() - arrived
                    self.engine.connect_latencies.append(latency)
                    if self.engine.on_connect is not None:
                        self.engine.on_connect(latency)
            elif isinstance(command, HangupLeg):
                carrier.hangup(
                    sid, command.leg, cause=command.cause, at=command.at, tone=command.tone
                )
            elif isinstance(command, BridgeLegs):
                carrier.bridge(sid, at=command.at, media=self._recorder())
            elif isinstance(command, StartRingTimer):
                deadline = command.at + timedelta(seconds=self.info.ring_timeout_sec)
                self._after(deadline, RingTimeout(command.leg, deadline))
            elif isinstance(command, StartCredit) and self.info.max_duration_sec is not None:
                end = command.at + timedelta(seconds=self.info.max_duration_sec)
                self._after(end, DurationReached(end))
            elif isinstance(command, Finish):
                for timer in list(self._timers):
                    timer.cancel()

    def _recorder(self) -> MediaSink | None:
        spool = self.engine.spool
        if not self.info.record or spool is None:
            return None
        try:
            return spool.recorder(self.info.call_sid)
        except OSError:
            # The call goes on unrecorded; the recording job then fails as "no audio".
            log.exception("cannot open the recording spool")
            return None

    def _after(self, deadline: datetime, event: Event | _RenewCredit) -> None:
        async def fire() -> None:
            await sleep_until(self.engine.clock, deadline)
            self.post(event)

        task = asyncio.create_task(fire())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def run(self) -> None:
        """The writer: store each change in order; credit grants happen here too."""
        call_sid_var.set(self.info.call_sid)
        try:
            while True:
                job = await self.writes.get()
                if isinstance(job, _RenewCredit):
                    await self._renew_credit()
                    continue
                await self.engine.write(self, job.state, events=job.events, grant=job.grant)
                if job.finish:
                    return
                if job.grant and not self.state.ended:
                    self._schedule_credit()
        except LeaseLost:
            log.warning("call taken over by another engine; letting it go")
            carrier = self.engine.carrier_for(self.info.carrier)
            now = self.engine.clock.now()
            for leg in (Leg.A, Leg.B):
                carrier.hangup(self.info.call_sid, leg, cause=Cause.SYSTEM_SHUTDOWN, at=now)
        except Exception:
            # The lease will lapse and a watchdog will end the call.
            log.exception("call writer failed")
        finally:
            for timer in list(self._timers):
                timer.cancel()
            self.engine.forget(self)
            self.done.set()

    def granted(self, pulses: int) -> None:
        self._granted = pulses

    def _schedule_credit(self) -> None:
        """Ask for more before the granted time runs out; end the call when it does."""
        bridged = self.state.bridged_at
        assert bridged is not None
        granted_end = bridged + timedelta(seconds=self._granted * self.info.pulse_sec)
        limit = self.info.max_duration_sec
        if limit is not None and granted_end >= bridged + timedelta(seconds=limit):
            return  # the duration timer ends the call first
        self._credit_end = granted_end
        self._after(granted_end - CREDIT_LEAD, _RenewCredit())

    async def _renew_credit(self) -> None:
        if self.state.ended or self._credit_end is None:
            return
        before = self._granted
        await self.engine.write(self, self.state, events=[], grant=True)
        if self._granted > before:
            self._schedule_credit()
        else:
            self._after(self._credit_end, CreditExhausted(self._credit_end))


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
        self.connect_latencies: deque[float] = deque(maxlen=100_000)
        # Told each connect latency (A answered → B dialled), for the metrics.
        self.on_connect = on_connect
        self._on_events = on_events
        self._runners: dict[str, CallRunner] = {}
        self._loops = Loops(clock, log)
        self._accepting = True
        self._runner_tasks: set[asyncio.Task[None]] = set()

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
        self._loops.start("engine claim", self._claim_once, POLL_SEC, wakeable=True)
        self._loops.start("engine heartbeat", self._heartbeat, HEARTBEAT_SEC)
        self._loops.start("engine watchdog", self._watchdog, WATCHDOG_SEC)

    async def stop(self) -> None:
        """Stop taking calls; after the grace period end live ones with SYSTEM_SHUTDOWN."""
        self._accepting = False
        if self._runners and self.settings.shutdown_grace_sec > 0:
            waiting = [r.done.wait() for r in self._runners.values()]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waiting), self.settings.shutdown_grace_sec)
        now = self.clock.now()
        for runner in list(self._runners.values()):
            runner.post(Shutdown(now))
        if self._runner_tasks:
            await asyncio.wait(set(self._runner_tasks), timeout=SHUTDOWN_WAIT_SEC)
        await self._loops.stop()
        for carrier in self.carriers.values():
            await carrier.close()

    def wake(self) -> None:
        self._loops.wake()

    def carrier_for(self, name: str) -> Carrier:
        return self.carriers[name]

    def forget(self, runner: CallRunner) -> None:
        self._runners.pop(runner.info.call_sid, None)

    def _on_leg_event(self, event: LegEvent) -> None:
        runner = self._runners.get(event.call_sid)
        if runner is not None:
            runner.post(event)

    # -- writing -------------------------------------------------------------

    async def write(
        self, runner: CallRunner, state: CallState, *, events: list[str], grant: bool
    ) -> None:
        """Store a runner's change (and grant credit) in one transaction, retried if busy."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                async with self.db.write() as session:
                    call = await load_call(session, runner.info.call_sid)
                    if call.engine_id != self.engine_id:
                        raise LeaseLost(call.call_sid)
                    now = self.clock.now()
                    call.lease_expires_at = now + LEASE
                    call.heartbeat_at = now
                    if runner.dialogs:
                        call.sip_dialogs = runner.dialogs
                    if grant and not state.ended:
                        await talktime.grant_pulses(
                            session, call, pricing_of(call), now=self.clock.now()
                        )
                        runner.granted(call.granted_pulses)
                    await apply_state(
                        session,
                        call,
                        state,
                        events=events,
                        public_url=self.settings.public_url,
                        now=self.clock.now(),
                    )
                break
            except LeaseLost:
                raise
            except Exception:
                if attempt == WRITE_ATTEMPTS:
                    raise
                log.warning("call write failed (attempt %d); retrying", attempt, exc_info=True)
                await asyncio.sleep(0.05 * attempt)
        if events and self._on_events is not None:
            self._on_events()

    # -- claiming, heartbeats, hang-up requests ------------------------------

    async def _claim_once(self) -> bool:
        if not self._accepting:
            return False
        now = self.clock.now()
        # A call accepted longer ago than its lifetime is not dialled now: the watchdog ends it.
        oldest = now - timedelta(seconds=self.settings.call_max_lifetime_sec)
        async with self.db.write() as session:
            pending = (
                select(Call.id)
                .where(
                    Call.status == "initiated",
                    Call.engine_id.is_(None),
                    Call.created_at >= oldest,
                )
                .order_by(Call.id)
                .limit(CLAIM_BATCH)
                .with_for_update(skip_locked=True)
            )
            claimed = list(
                (
                    await session.execute(
                        update(Call)
                        .where(Call.id.in_(pending.scalar_subquery()))
                        .values(
                            engine_id=self.engine_id, lease_expires_at=now + LEASE, heartbeat_at=now
                        )
                        .returning(Call)
                    )
                ).scalars()
            )
        for call in claimed:
            self._start_runner(call, now)
        await self._deliver_hangup_requests()
        return len(claimed) == CLAIM_BATCH

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
        if call.hangup_requested_at is not None:
            runner.hangup_posted = True
            runner.post(HangupRequested(now))
        else:
            runner.post(Start(now))
        task = asyncio.create_task(runner.run())
        self._runner_tasks.add(task)
        task.add_done_callback(self._runner_tasks.discard)

    async def _deliver_hangup_requests(self) -> None:
        if not self._runners:
            return
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

    async def _heartbeat(self) -> bool:
        if not self._runners:
            return False
        now = self.clock.now()
        # Only calls with a runner: a call whose runner died must let its lease lapse, so
        # the watchdog ends it. Rows a runner is writing right now are skipped: its own
        # write renews the lease, and waiting for them could deadlock with its wallet update.
        mine = (
            select(Call.id)
            .where(
                Call.engine_id == self.engine_id,
                Call.call_sid.in_(list(self._runners)),
                Call.status.in_(LIVE_STATUSES),
            )
            .with_for_update(skip_locked=True)
        )
        async with self.db.write() as session:
            await session.execute(
                update(Call)
                .where(Call.id.in_(mine.scalar_subquery()))
                .values(lease_expires_at=now + LEASE, heartbeat_at=now)
            )
        return False

    async def _watchdog(self) -> bool:
        """End the calls no live runner drives: those of engines whose lease ran out, and
        any call older than ``MASKLINE_CALL_MAX_LIFETIME_SEC`` (SPEC §8)."""
        now = self.clock.now()
        oldest = now - timedelta(seconds=self.settings.call_max_lifetime_sec)
        for runner in list(self._runners.values()):
            if runner.info.created_at < oldest and not runner.lifetime_posted:
                runner.lifetime_posted = True
                runner.post(LifetimeExceeded(now))
        driven = list(self._runners)
        async with self.db.write() as session:
            query = (
                select(Call)
                .where(
                    Call.status.in_(LIVE_STATUSES),
                    or_(
                        and_(
                            Call.engine_id.is_not(None),
                            or_(Call.lease_expires_at.is_(None), Call.lease_expires_at < now),
                        ),
                        # Accepted but never claimed (no engine has been running).
                        and_(Call.engine_id.is_(None), Call.created_at < oldest),
                    ),
                )
                .order_by(Call.id)
                .limit(CLAIM_BATCH)
                .with_for_update(skip_locked=True)
            )
            if driven:
                query = query.where(Call.call_sid.not_in(driven))
            orphans = list((await session.execute(query)).scalars())
            for call in orphans:
                await self._end_orphan(session, call, now)
        return len(orphans) == CLAIM_BATCH

    async def _end_orphan(self, session: AsyncSession, call: Call, now: datetime) -> None:
        log.warning("ending call of a dead engine", extra={"call_sid": call.call_sid})
        state = state_of(call)
        last_seen = max(
            t for t in (call.heartbeat_at, call.bridged_at, call.answered_at, call.created_at) if t
        )
        # Bridged time is billed up to the dead engine's last heartbeat, which becomes ended_at.
        # A call no engine ever claimed just outlived its lifetime.
        ended, commands = step(
            state, Shutdown(last_seen) if call.engine_id is not None else LifetimeExceeded(now)
        )
        call.engine_id = self.engine_id
        await apply_state(
            session,
            call,
            ended,
            events=[c.event for c in commands if isinstance(c, Emit)],
            public_url=self.settings.public_url,
            now=now,
        )
        self._bye_after_commit(session, call)

    def _bye_after_commit(self, session: AsyncSession, call: Call) -> None:
        """Once the call's end is committed, hang up the legs still up at the trunk from
        their stored dialogs (nothing is sent from inside the transaction)."""
        carrier = self.carriers.get(call.carrier)
        if not call.sip_dialogs:
            return
        if carrier is None:
            log.error("no %s carrier here to hang up a dead engine's call", call.carrier)
            return
        sid, dialogs = call.call_sid, [Dialog.from_json(d) for d in call.sip_dialogs.values()]
        sa_event.listen(
            session.sync_session,
            "after_commit",
            lambda _session: carrier.end_orphan(sid, dialogs),
            once=True,
        )
