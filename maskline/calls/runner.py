"""One call's runner: steps its flow the moment an event arrives, issues the carrier
commands at once, and has a writer task store each change in order.

B is dialled without waiting for any database write, however busy the database
is: the writer stores the change, its money and its events afterwards, in one
transaction per change, through the engine (``engine.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

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
    RingTimeout,
    StartCredit,
    StartRingTimer,
    step,
)
from maskline.calls.lifecycle import LeaseLost
from maskline.kit.clock import sleep_until
from maskline.kit.logging import call_sid_var
from maskline.telephony.carrier import Dial, MediaSink
from maskline.telephony.events import Cause, Leg, LegAnswered

if TYPE_CHECKING:
    from maskline.calls.engine import CallEngine

log = logging.getLogger("maskline.engine")

CREDIT_LEAD = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class _RenewCredit:
    """Time to ask the wallet for the next chunk of talk time."""


@dataclass(frozen=True, slots=True)
class _LetGo:
    """Another engine owns the call now: stop driving it."""


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
        self.writes: asyncio.Queue[_Write | _RenewCredit | _LetGo] = asyncio.Queue()
        self.done = asyncio.Event()
        self.hangup_posted = False
        self.lifetime_posted = False
        self._timers: set[asyncio.Task[None]] = set()
        self._granted = 0
        self._credit_end: datetime | None = None
        # Confirmed SIP dialogs by leg, stored with the next write (SPEC §8).
        self.dialogs: dict[str, dict[str, object]] = {}

    def let_go(self) -> None:
        self.writes.put_nowait(_LetGo())

    def post(self, event: Event | _RenewCredit) -> None:
        if isinstance(event, _RenewCredit):
            self.writes.put_nowait(event)
            return
        if isinstance(event, LegAnswered) and event.dialog is not None:
            self.dialogs = {**self.dialogs, event.leg.value: event.dialog.to_json()}
        arrived = time.perf_counter()
        new, commands = step(self.state, event)
        changed = new is not self.state
        self.state = new
        # A carrier that sent B at A's answer (``Dial.then``) timed the connect itself; it
        # expects B's dial from here, now, before this returns (or it cancels B).
        sent_sec = event.next_sent_sec if isinstance(event, LegAnswered) else None
        self._carry_out(commands, arrived, sent_sec)
        if not changed:
            return  # e.g. a leg dialled: a timer to start, nothing to store
        self.writes.put_nowait(
            _Write(
                state=new,
                events=[c.event for c in commands if isinstance(c, Emit)],
                grant=any(isinstance(c, StartCredit) for c in commands),
                finish=any(isinstance(c, Finish) for c in commands),
            )
        )

    def _carry_out(
        self, commands: list[Command], arrived: float, sent_sec: float | None = None
    ) -> None:
        carrier = self.engine.carrier_for(self.info.carrier)
        sid = self.info.call_sid
        for command in commands:
            if isinstance(command, DialLeg):
                info = self.info
                if command.leg is Leg.A:
                    # B follows A's answer in every phase the flow can be in then.
                    b = Dial(sid, Leg.B, info.party_b, info.masked_number, command.at)
                    carrier.dial(Dial(sid, Leg.A, info.party_a, info.masked_number, command.at, b))
                else:
                    carrier.dial(Dial(sid, Leg.B, info.party_b, info.masked_number, command.at))
                if command.leg is Leg.B:
                    latency = time.perf_counter() - arrived if sent_sec is None else sent_sec
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
            # The call goes on unrecorded; the recording job then fails: its spool is missing.
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
                if isinstance(job, _LetGo):
                    raise LeaseLost(self.info.call_sid)
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
            self._drop_legs()
        except Exception:
            # Its lease lapses (heartbeats renew only driven calls) and a watchdog ends
            # the call in the database; its legs must not talk on unbilled meanwhile.
            log.exception("call writer failed")
            self._drop_legs()
        finally:
            for timer in list(self._timers):
                timer.cancel()
            self.engine.forget(self)
            self.done.set()

    def _drop_legs(self) -> None:
        carrier = self.engine.carrier_for(self.info.carrier)
        now = self.engine.clock.now()
        for leg in (Leg.A, Leg.B):
            carrier.hangup(self.info.call_sid, leg, cause=Cause.SYSTEM_SHUTDOWN, at=now)

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
