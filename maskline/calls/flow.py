"""The call state machine: ``step(state, event) -> (state, commands)``. Pure: no I/O.

Statuses (SPEC §3): initiated → ringing → answered → in-progress → completed,
or failed / no-answer. Inside, the phase also says which leg is being dialled.
Events that cannot apply to the current phase (a late ringing, a duplicate
answer, a hang-up after the end, a timer that lost its race) change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from maskline.telephony.events import (
    PARTY_CAUSES,
    Cause,
    Leg,
    LegAnswered,
    LegDialled,
    LegEvent,
    LegFailed,
    LegHungUp,
    LegMediaTimeout,
    LegRinging,
)

# What the far end answers to the CANCEL we send when a leg rings too long.
RING_TIMEOUT_SIP_CODE = 487


class Phase(StrEnum):
    ACCEPTED = "accepted"
    DIALLING_A = "dialling_a"
    RINGING_A = "ringing_a"
    DIALLING_B = "dialling_b"
    BRIDGED = "bridged"
    ENDED = "ended"


class Status(StrEnum):
    INITIATED = "initiated"
    RINGING = "ringing"
    ANSWERED = "answered"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    FAILED = "failed"
    NO_ANSWER = "no-answer"


EVENT_NAMES = {
    Status.INITIATED: "call.initiated",
    Status.RINGING: "call.ringing",
    Status.ANSWERED: "call.answered",
    Status.IN_PROGRESS: "call.bridged",
    Status.COMPLETED: "call.completed",
    Status.FAILED: "call.failed",
    Status.NO_ANSWER: "call.no-answer",
}

_PHASE_STATUS = {
    Phase.ACCEPTED: Status.INITIATED,
    Phase.DIALLING_A: Status.INITIATED,
    Phase.RINGING_A: Status.RINGING,
    Phase.DIALLING_B: Status.ANSWERED,
    Phase.BRIDGED: Status.IN_PROGRESS,
}


@dataclass(frozen=True, slots=True)
class CallState:
    phase: Phase = Phase.ACCEPTED
    status: Status = Status.INITIATED
    started_at: datetime | None = None
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    hangup_cause: Cause | None = None
    hangup_by: str | None = None
    failed_leg: Leg | None = None
    sip_code: int | None = None

    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED


# Events the engine itself produces (timers, the API, shutdown).


@dataclass(frozen=True, slots=True)
class Start:
    at: datetime


@dataclass(frozen=True, slots=True)
class RingTimeout:
    leg: Leg
    at: datetime


@dataclass(frozen=True, slots=True)
class HangupRequested:
    at: datetime


@dataclass(frozen=True, slots=True)
class DurationReached:
    at: datetime


@dataclass(frozen=True, slots=True)
class CreditExhausted:
    at: datetime


@dataclass(frozen=True, slots=True)
class Shutdown:
    at: datetime


@dataclass(frozen=True, slots=True)
class LifetimeExceeded:
    """The call outlived ``MASKLINE_CALL_MAX_LIFETIME_SEC`` (the watchdog's last resort)."""

    at: datetime


Event = (
    Start
    | RingTimeout
    | HangupRequested
    | DurationReached
    | CreditExhausted
    | Shutdown
    | LifetimeExceeded
    | LegDialled
    | LegRinging
    | LegAnswered
    | LegFailed
    | LegHungUp
    | LegMediaTimeout
    | LegEvent
)

# Commands for the engine to carry out, in order.


@dataclass(frozen=True, slots=True)
class DialLeg:
    leg: Leg
    at: datetime


@dataclass(frozen=True, slots=True)
class HangupLeg:
    leg: Leg
    cause: Cause
    at: datetime
    tone: bool = False


@dataclass(frozen=True, slots=True)
class StartRingTimer:
    leg: Leg
    at: datetime


@dataclass(frozen=True, slots=True)
class BridgeLegs:
    at: datetime


@dataclass(frozen=True, slots=True)
class StartCredit:
    """Grant talk time from the wallet, and arm the max-duration and credit timers."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Emit:
    """A public status change: record it and its webhook event."""

    event: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The call is over: settle its money, free its number, stop its timers."""


Command = DialLeg | HangupLeg | StartRingTimer | BridgeLegs | StartCredit | Emit | Finish

Step = tuple[CallState, list[Command]]


def _move(state: CallState, phase: Phase, **changes: object) -> CallState:
    return replace(state, phase=phase, status=_PHASE_STATUS[phase], **changes)  # type: ignore[arg-type]


def _end(
    state: CallState,
    *,
    at: datetime,
    cause: Cause,
    by: str,
    failed_leg: Leg | None = None,
    sip_code: int | None = None,
    status: Status | None = None,
) -> CallState:
    if status is None:
        status = Status.COMPLETED if state.phase is Phase.BRIDGED else Status.FAILED
    return replace(
        state,
        phase=Phase.ENDED,
        status=status,
        ended_at=at,
        hangup_cause=cause,
        hangup_by=by,
        failed_leg=failed_leg,
        sip_code=sip_code,
    )


def _live_legs(state: CallState) -> tuple[Leg, ...]:
    if state.phase in (Phase.DIALLING_A, Phase.RINGING_A):
        return (Leg.A,)
    if state.phase in (Phase.DIALLING_B, Phase.BRIDGED):
        return (Leg.B, Leg.A)
    return ()


def _finish(state: CallState, new: CallState, hangups: list[Command]) -> Step:
    return new, [*hangups, Emit(EVENT_NAMES[new.status]), Finish()]


def _system_end(state: CallState, at: datetime, cause: Cause) -> Step:
    """End from our side (API, timers, shutdown): hang up every leg that is up or ringing."""
    new = _end(state, at=at, cause=cause, by="system")
    return _finish(state, new, [HangupLeg(leg, cause, at) for leg in _live_legs(state)])


def _a_failed(state: CallState, event: LegFailed) -> Step:
    status = Status.NO_ANSWER if event.cause is Cause.NO_ANSWER else Status.FAILED
    by = "party_a" if event.cause in PARTY_CAUSES else "system"
    new = _end(
        state,
        at=event.at,
        cause=event.cause,
        by=by,
        failed_leg=Leg.A,
        sip_code=event.sip_code,
        status=status,
    )
    return _finish(state, new, [])


def _b_failed(state: CallState, *, at: datetime, cause: Cause, sip_code: int | None) -> Step:
    """B did not connect after A answered: A hears a short tone, the call fails, unbilled."""
    by = "party_b" if cause in PARTY_CAUSES else "system"
    new = _end(
        state,
        at=at,
        cause=cause,
        by=by,
        failed_leg=Leg.B,
        sip_code=sip_code,
        status=Status.FAILED,
    )
    return _finish(state, new, [HangupLeg(Leg.A, cause, at, tone=True)])


def step(state: CallState, event: Event) -> Step:
    phase = state.phase
    unchanged: Step = (state, [])
    if phase is Phase.ENDED:
        return unchanged

    if isinstance(event, Shutdown):
        return _system_end(state, event.at, Cause.SYSTEM_SHUTDOWN)
    if isinstance(event, LifetimeExceeded):
        return _system_end(state, event.at, Cause.ALLOTTED_TIMEOUT)
    if isinstance(event, HangupRequested):
        return _system_end(state, event.at, Cause.NORMAL_CLEARING)

    if phase is Phase.ACCEPTED:
        if isinstance(event, Start):
            new = replace(state, phase=Phase.DIALLING_A, started_at=event.at)
            return new, [DialLeg(Leg.A, event.at)]
        return unchanged

    if phase in (Phase.DIALLING_A, Phase.RINGING_A):
        if isinstance(event, LegDialled) and event.leg is Leg.A:
            # The ring time counts from the INVITE, however long the dial took to go out
            # (a claim's commit, the carrier's pacing): a leg is never given up unrung.
            return state, [StartRingTimer(Leg.A, event.at)]
        if isinstance(event, LegRinging) and event.leg is Leg.A and phase is Phase.DIALLING_A:
            return _move(state, Phase.RINGING_A), [Emit(EVENT_NAMES[Status.RINGING])]
        if isinstance(event, LegAnswered) and event.leg is Leg.A:
            new = _move(state, Phase.DIALLING_B, answered_at=event.at)
            # Dial B first: the gap between A's answer and B's dial is the connect latency.
            return new, [DialLeg(Leg.B, event.at), Emit(EVENT_NAMES[Status.ANSWERED])]
        if isinstance(event, LegFailed) and event.leg is Leg.A:
            return _a_failed(state, event)
        if isinstance(event, RingTimeout) and event.leg is Leg.A:
            new = _end(
                state,
                at=event.at,
                cause=Cause.NO_ANSWER,
                by="system",
                failed_leg=Leg.A,
                sip_code=RING_TIMEOUT_SIP_CODE,
                status=Status.NO_ANSWER,
            )
            return _finish(state, new, [HangupLeg(Leg.A, Cause.NO_ANSWER, event.at)])
        return unchanged

    if phase is Phase.DIALLING_B:
        if isinstance(event, LegDialled) and event.leg is Leg.B:
            return state, [StartRingTimer(Leg.B, event.at)]
        if isinstance(event, LegAnswered) and event.leg is Leg.B:
            new = _move(state, Phase.BRIDGED, bridged_at=event.at)
            return new, [
                BridgeLegs(event.at),
                StartCredit(event.at),
                Emit(EVENT_NAMES[Status.IN_PROGRESS]),
            ]
        if isinstance(event, LegFailed) and event.leg is Leg.B:
            return _b_failed(state, at=event.at, cause=event.cause, sip_code=event.sip_code)
        if isinstance(event, RingTimeout) and event.leg is Leg.B:
            new_state, commands = _b_failed(
                state, at=event.at, cause=Cause.NO_ANSWER, sip_code=RING_TIMEOUT_SIP_CODE
            )
            return new_state, [HangupLeg(Leg.B, Cause.NO_ANSWER, event.at), *commands]
        if isinstance(event, LegHungUp) and event.leg is Leg.A:
            new = _end(state, at=event.at, cause=Cause.ORIGINATOR_CANCEL, by="party_a")
            return _finish(state, new, [HangupLeg(Leg.B, Cause.ORIGINATOR_CANCEL, event.at)])
        return unchanged

    # Phase.BRIDGED
    if isinstance(event, LegHungUp):
        new = _end(state, at=event.at, cause=Cause.NORMAL_CLEARING, by=event.leg.value)
        return _finish(state, new, [HangupLeg(event.leg.other, Cause.NORMAL_CLEARING, event.at)])
    if isinstance(event, DurationReached):
        return _system_end(state, event.at, Cause.ALLOTTED_TIMEOUT)
    if isinstance(event, CreditExhausted):
        return _system_end(state, event.at, Cause.BALANCE_EXHAUSTED)
    if isinstance(event, LegMediaTimeout):
        return _system_end(state, event.at, Cause.RECOVERY_ON_TIMER_EXPIRE)
    return unchanged
