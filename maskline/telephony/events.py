"""What a carrier tells the engine about a leg. Immutable, and free of I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


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
class LegDialled(LegEvent):
    """The leg's request has gone out (the SIP INVITE was sent) at ``at``: its ring
    time starts now, not when the engine asked for the dial."""


@dataclass(frozen=True, slots=True)
class LegRinging(LegEvent):
    pass


@dataclass(frozen=True, slots=True)
class Dialog:
    """A confirmed SIP dialog of one leg, as plain data: enough for any engine to end it
    (SPEC §8). ``local``/``remote`` are the From/To header values with their tags,
    ``cseq`` the next CSeq we may use, ``next_hop`` where in-dialog requests go."""

    call_id: str
    local: str
    remote: str
    local_tag: str
    remote_tag: str
    remote_target: str
    route_set: tuple[str, ...]
    cseq: int
    next_hop: tuple[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "local": self.local,
            "remote": self.remote,
            "local_tag": self.local_tag,
            "remote_tag": self.remote_tag,
            "remote_target": self.remote_target,
            "route_set": list(self.route_set),
            "cseq": self.cseq,
            "next_hop": [self.next_hop[0], self.next_hop[1]],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dialog:
        host, port = data["next_hop"]
        return cls(
            call_id=str(data["call_id"]),
            local=str(data["local"]),
            remote=str(data["remote"]),
            local_tag=str(data["local_tag"]),
            remote_tag=str(data["remote_tag"]),
            remote_target=str(data["remote_target"]),
            route_set=tuple(str(r) for r in data["route_set"]),
            cseq=int(data["cseq"]),
            next_hop=(str(host), int(port)),
        )


@dataclass(frozen=True, slots=True)
class LegAnswered(LegEvent):
    """The leg answered; a SIP leg carries its confirmed ``dialog``. ``next_sent_sec``:
    when the carrier sent the next leg itself at this answer (``Dial.then``), the
    seconds from the answer's arrival to that leg's request going out."""

    dialog: Dialog | None = None
    next_sent_sec: float | None = None


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
