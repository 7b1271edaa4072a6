"""calls/flow.py over every (phase, event) pair: the outcome table of SPEC §3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest

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
    Phase,
    RingTimeout,
    Shutdown,
    Start,
    StartCredit,
    StartRingTimer,
    Status,
    step,
)
from maskline.telephony.events import (
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

T0 = datetime(2026, 5, 11, 8, 30, tzinfo=UTC)
AT = T0 + timedelta(seconds=7)
SID = "d28be7cd-9840-4b23-9627-199f1ef81fc6"

STATES = {
    Phase.ACCEPTED: CallState(),
    Phase.DIALLING_A: CallState(phase=Phase.DIALLING_A, started_at=T0),
    Phase.RINGING_A: CallState(phase=Phase.RINGING_A, status=Status.RINGING, started_at=T0),
    Phase.DIALLING_B: CallState(
        phase=Phase.DIALLING_B, status=Status.ANSWERED, started_at=T0, answered_at=T0
    ),
    Phase.BRIDGED: CallState(
        phase=Phase.BRIDGED,
        status=Status.IN_PROGRESS,
        started_at=T0,
        answered_at=T0,
        bridged_at=T0,
    ),
    Phase.ENDED: CallState(
        phase=Phase.ENDED,
        status=Status.COMPLETED,
        started_at=T0,
        ended_at=T0,
        hangup_cause=Cause.NORMAL_CLEARING,
        hangup_by="party_a",
    ),
}

EVENTS: dict[str, Event] = {
    "start": Start(AT),
    "a_dialled": LegDialled(SID, Leg.A, AT),
    "b_dialled": LegDialled(SID, Leg.B, AT),
    "a_ringing": LegRinging(SID, Leg.A, AT),
    "b_ringing": LegRinging(SID, Leg.B, AT),
    "a_answered": LegAnswered(SID, Leg.A, AT),
    "b_answered": LegAnswered(SID, Leg.B, AT),
    "a_busy": LegFailed(SID, Leg.A, AT, Cause.USER_BUSY, 486),
    "a_no_answer": LegFailed(SID, Leg.A, AT, Cause.NO_ANSWER, 480),
    "a_unallocated": LegFailed(SID, Leg.A, AT, Cause.UNALLOCATED_NUMBER, 404),
    "a_rejected": LegFailed(SID, Leg.A, AT, Cause.CALL_REJECTED, 603),
    "b_busy": LegFailed(SID, Leg.B, AT, Cause.USER_BUSY, 486),
    "b_trunk": LegFailed(SID, Leg.B, AT, Cause.NORMAL_TEMPORARY_FAILURE, 503),
    "a_hangup": LegHungUp(SID, Leg.A, AT),
    "b_hangup": LegHungUp(SID, Leg.B, AT),
    "a_media_timeout": LegMediaTimeout(SID, Leg.A, AT),
    "b_media_timeout": LegMediaTimeout(SID, Leg.B, AT),
    # A leg event of a kind the flow does not know (a carrier's newer one): ignored.
    "a_other": LegEvent(SID, Leg.A, AT),
    "b_other": LegEvent(SID, Leg.B, AT),
    "a_ring_timeout": RingTimeout(Leg.A, AT),
    "b_ring_timeout": RingTimeout(Leg.B, AT),
    "hangup_api": HangupRequested(AT),
    "max_duration": DurationReached(AT),
    "credit_exhausted": CreditExhausted(AT),
    "shutdown": Shutdown(AT),
    "lifetime": LifetimeExceeded(AT),
}


def ended(
    status: Status,
    cause: Cause,
    by: str,
    failed_leg: Leg | None = None,
    sip_code: int | None = None,
) -> tuple[Phase, Status, Cause, str, Leg | None, int | None]:
    return (Phase.ENDED, status, cause, by, failed_leg, sip_code)


def hangups(*legs: tuple[Leg, Cause, bool]) -> list[Command]:
    return [HangupLeg(leg, cause, AT, tone=tone) for leg, cause, tone in legs]


def terminal(status: Status) -> list[Command]:
    names = {
        Status.COMPLETED: "call.completed",
        Status.FAILED: "call.failed",
        Status.NO_ANSWER: "call.no-answer",
    }
    return [Emit(names[status]), Finish()]


F, C, N = Status.FAILED, Status.COMPLETED, Status.NO_ANSWER
A_UP = (Leg.A, Cause.NORMAL_CLEARING, False)
B_UP = (Leg.B, Cause.NORMAL_CLEARING, False)


def system(phase: Phase, cause: Cause) -> tuple[object, list[Command]]:
    status = C if phase is Phase.BRIDGED else F
    legs = {
        Phase.ACCEPTED: (),
        Phase.DIALLING_A: (Leg.A,),
        Phase.RINGING_A: (Leg.A,),
        Phase.DIALLING_B: (Leg.B, Leg.A),
        Phase.BRIDGED: (Leg.B, Leg.A),
    }[phase]
    return (
        ended(status, cause, "system"),
        [*hangups(*[(leg, cause, False) for leg in legs]), *terminal(status)],
    )


# (phase, event) -> (outcome, commands); every pair not listed must change nothing.
TABLE: dict[tuple[Phase, str], tuple[object, list[Command]]] = {
    (Phase.ACCEPTED, "start"): (
        (Phase.DIALLING_A, Status.INITIATED),
        [DialLeg(Leg.A, AT)],
    ),
    # A leg's ring time starts once its INVITE has gone out, not when it was asked for.
    **{
        (phase, "a_dialled"): ((phase, STATES[phase].status), [StartRingTimer(Leg.A, AT)])
        for phase in (Phase.DIALLING_A, Phase.RINGING_A)
    },
    (Phase.DIALLING_B, "b_dialled"): (
        (Phase.DIALLING_B, Status.ANSWERED),
        [StartRingTimer(Leg.B, AT)],
    ),
    (Phase.DIALLING_A, "a_ringing"): ((Phase.RINGING_A, Status.RINGING), [Emit("call.ringing")]),
    **{
        (phase, "a_answered"): (
            (Phase.DIALLING_B, Status.ANSWERED),
            [DialLeg(Leg.B, AT), Emit("call.answered")],
        )
        for phase in (Phase.DIALLING_A, Phase.RINGING_A)
    },
    **{
        (phase, name): outcome
        for phase in (Phase.DIALLING_A, Phase.RINGING_A)
        for name, outcome in {
            "a_busy": (ended(F, Cause.USER_BUSY, "party_a", Leg.A, 486), terminal(F)),
            "a_no_answer": (ended(N, Cause.NO_ANSWER, "system", Leg.A, 480), terminal(N)),
            "a_unallocated": (
                ended(F, Cause.UNALLOCATED_NUMBER, "system", Leg.A, 404),
                terminal(F),
            ),
            "a_rejected": (ended(F, Cause.CALL_REJECTED, "party_a", Leg.A, 603), terminal(F)),
            "a_ring_timeout": (
                ended(N, Cause.NO_ANSWER, "system", Leg.A, 487),
                [*hangups((Leg.A, Cause.NO_ANSWER, False)), *terminal(N)],
            ),
        }.items()
    },
    (Phase.DIALLING_B, "b_answered"): (
        (Phase.BRIDGED, Status.IN_PROGRESS),
        [BridgeLegs(AT), StartCredit(AT), Emit("call.bridged")],
    ),
    (Phase.DIALLING_B, "b_busy"): (
        ended(F, Cause.USER_BUSY, "party_b", Leg.B, 486),
        [*hangups((Leg.A, Cause.USER_BUSY, True)), *terminal(F)],
    ),
    (Phase.DIALLING_B, "b_trunk"): (
        ended(F, Cause.NORMAL_TEMPORARY_FAILURE, "system", Leg.B, 503),
        [*hangups((Leg.A, Cause.NORMAL_TEMPORARY_FAILURE, True)), *terminal(F)],
    ),
    (Phase.DIALLING_B, "b_ring_timeout"): (
        ended(F, Cause.NO_ANSWER, "system", Leg.B, 487),
        [
            *hangups((Leg.B, Cause.NO_ANSWER, False), (Leg.A, Cause.NO_ANSWER, True)),
            *terminal(F),
        ],
    ),
    (Phase.DIALLING_B, "a_hangup"): (
        ended(F, Cause.ORIGINATOR_CANCEL, "party_a"),
        [*hangups((Leg.B, Cause.ORIGINATOR_CANCEL, False)), *terminal(F)],
    ),
    (Phase.BRIDGED, "a_hangup"): (
        ended(C, Cause.NORMAL_CLEARING, "party_a"),
        [
            *hangups(B_UP),
            *terminal(C),
        ],
    ),
    (Phase.BRIDGED, "b_hangup"): (
        ended(C, Cause.NORMAL_CLEARING, "party_b"),
        [
            *hangups(A_UP),
            *terminal(C),
        ],
    ),
    (Phase.BRIDGED, "max_duration"): system(Phase.BRIDGED, Cause.ALLOTTED_TIMEOUT),
    (Phase.BRIDGED, "credit_exhausted"): system(Phase.BRIDGED, Cause.BALANCE_EXHAUSTED),
    (Phase.BRIDGED, "a_media_timeout"): system(Phase.BRIDGED, Cause.RECOVERY_ON_TIMER_EXPIRE),
    (Phase.BRIDGED, "b_media_timeout"): system(Phase.BRIDGED, Cause.RECOVERY_ON_TIMER_EXPIRE),
    **{
        (phase, "hangup_api"): system(phase, Cause.NORMAL_CLEARING)
        for phase in STATES
        if phase is not Phase.ENDED
    },
    **{
        (phase, "shutdown"): system(phase, Cause.SYSTEM_SHUTDOWN)
        for phase in STATES
        if phase is not Phase.ENDED
    },
    # The watchdog's last resort (SPEC §8): like the hang-up API, with its own cause.
    **{
        (phase, "lifetime"): system(phase, Cause.ALLOTTED_TIMEOUT)
        for phase in STATES
        if phase is not Phase.ENDED
    },
}

PAIRS = [(phase, name) for phase in STATES for name in EVENTS]


def _outcome(state: CallState) -> object:
    if state.phase is Phase.ENDED:
        return ended(
            state.status,
            state.hangup_cause,  # type: ignore[arg-type]
            state.hangup_by,  # type: ignore[arg-type]
            state.failed_leg,
            state.sip_code,
        )
    return (state.phase, state.status)


@pytest.mark.parametrize(("phase", "name"), PAIRS, ids=[f"{p}-{n}" for p, n in PAIRS])
def test_every_phase_and_event(phase: Phase, name: str) -> None:
    before = STATES[phase]
    after, commands = step(before, EVENTS[name])
    expected = TABLE.get((phase, name))
    if expected is None:
        assert (after, commands) == (before, []), "this event must be ignored here"
        return
    outcome, expected_commands = expected
    assert _outcome(after) == outcome
    assert commands == expected_commands


def test_timestamps_follow_the_events() -> None:
    state = CallState()
    times = [T0 + timedelta(seconds=s) for s in (0, 1, 3, 5, 99)]
    state, _ = step(state, Start(times[0]))
    state, _ = step(state, LegRinging(SID, Leg.A, times[1]))
    state, _ = step(state, LegAnswered(SID, Leg.A, times[2]))
    state, _ = step(state, LegAnswered(SID, Leg.B, times[3]))
    state, _ = step(state, LegHungUp(SID, Leg.B, times[4]))
    assert (state.started_at, state.answered_at, state.bridged_at, state.ended_at) == (
        times[0],
        times[2],
        times[3],
        times[4],
    )
    assert (state.status, state.hangup_by, state.failed_leg) == (C, "party_b", None)


def test_the_table_names_only_real_pairs() -> None:
    assert set(TABLE) <= set(PAIRS)


def test_every_phase_and_every_kind_of_event_is_in_the_table() -> None:
    # A new phase, or a new event type in flow.Event, fails here until it has a row.
    assert set(STATES) == set(Phase)
    assert {type(event) for event in EVENTS.values()} == set(get_args(Event))
    leg_kinds = {type(e) for e in EVENTS.values() if isinstance(e, LegEvent | RingTimeout)}
    assert {(type(e), e.leg) for e in EVENTS.values() if isinstance(e, LegEvent | RingTimeout)} == {
        (kind, leg) for kind in leg_kinds for leg in Leg
    }


def test_each_state_is_in_the_phase_it_is_filed_under() -> None:
    assert {phase: (state.phase, state.ended) for phase, state in STATES.items()} == {
        phase: (phase, phase is Phase.ENDED) for phase in Phase
    }
