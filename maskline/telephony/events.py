"""What a carrier tells the engine about a leg. Immutable, and free of I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Leg(StrEnum):
    A = "party_a"
    B = "party_b"

    @property
    def other(self) -> Leg:
        return Leg.B if self is Leg.A else Leg.A


class Cause(StrEnum):
    """``hangup_cause`` values (SPEC §3), a closed list."""

    NORMAL_CLEARING = "NORMAL_CLEARING"
    USER_BUSY = "USER_BUSY"
    NO_ANSWER = "NO_ANSWER"
    CALL_REJECTED = "CALL_REJECTED"
    UNALLOCATED_NUMBER = "UNALLOCATED_NUMBER"
    INVALID_NUMBER_FORMAT = "INVALID_NUMBER_FORMAT"
    NORMAL_TEMPORARY_FAILURE = "NORMAL_TEMPORARY_FAILURE"
    ORIGINATOR_CANCEL = "ORIGINATOR_CANCEL"
    RECOVERY_ON_TIMER_EXPIRE = "RECOVERY_ON_TIMER_EXPIRE"
    ALLOTTED_TIMEOUT = "ALLOTTED_TIMEOUT"
    BALANCE_EXHAUSTED = "BALANCE_EXHAUSTED"
    SYSTEM_SHUTDOWN = "SYSTEM_SHUTDOWN"


# Failures the called party chose (so the call was "hung up by" them).
PARTY_CAUSES = frozenset({Cause.USER_BUSY, Cause.CALL_REJECTED})


@dataclass(frozen=True, slots=True)
class LegEvent:
    call_sid: str
    leg: Leg
    at: datetime


@dataclass(frozen=True, slots=True)
class LegRinging(LegEvent):
    pass


@dataclass(frozen=True, slots=True)
class LegAnswered(LegEvent):
    pass


@dataclass(frozen=True, slots=True)
class LegFailed(LegEvent):
    """The leg did not connect: ``cause`` per SPEC §3, ``sip_code`` the final response."""

    cause: Cause
    sip_code: int | None = None


@dataclass(frozen=True, slots=True)
class LegHungUp(LegEvent):
    """An answered leg's party hung up."""


@dataclass(frozen=True, slots=True)
class LegMediaTimeout(LegEvent):
    """A bridged leg sent no media for the media timeout."""
