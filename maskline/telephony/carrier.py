"""The one interface the call engine sees (ARCHITECTURE §5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from maskline.telephony.events import Cause, Dialog, Leg, LegEvent

EventSink = Callable[[LegEvent], None]


@dataclass(frozen=True, slots=True)
class Dial:
    """Dial one leg: ``number`` is the party's 10-digit form, ``caller_id`` the masked number.

    ``then`` is the dial that follows this leg's answer (B's, on A's dial). A carrier may
    send it the moment the leg answers, before the engine has even heard of the answer:
    the connect latency is then the carrier's alone. The engine still asks for that leg
    with ``dial`` while it takes in the ``LegAnswered`` (inside the sink's call); a leg so
    sent and not asked for then is hung up by the carrier. A carrier may ignore ``then``.
    """

    call_sid: str
    leg: Leg
    number: str
    caller_id: str
    at: datetime
    then: Dial | None = None


class MediaSink(Protocol):
    """Receives the bridged audio: 16-bit little-endian PCM at 8 kHz, per leg."""

    def on_audio(self, leg: Leg, pcm: bytes) -> None: ...

    def close(self) -> None: ...


class Carrier(Protocol):
    name: str
    # INVITEs received for pool numbers (parties calling a masked number back), for /metrics.
    inbound_calls: int

    @property
    def ready(self) -> bool:
        """True once started and able to carry calls (checked by /readyz)."""
        ...

    async def start(self, sink: EventSink) -> None:
        """Begin delivering leg events to ``sink`` (called on the engine's loop, which
        carries out the commands an event leads to before the call returns)."""
        ...

    def dial(self, request: Dial) -> None:
        """Start dialling a leg. Must return at once: the result arrives as events,
        first ``LegDialled`` once the leg's request has gone out (its ring time starts
        then), unless the leg fails or is hung up before that."""
        ...

    def hangup(
        self, call_sid: str, leg: Leg, *, cause: Cause, at: datetime, tone: bool = False
    ) -> None:
        """End a leg at ``at`` (cancel it if still ringing); ``tone`` plays a short tone first."""
        ...

    def bridge(self, call_sid: str, *, at: datetime, media: MediaSink | None) -> None:
        """Connect the two answered legs; the audio of both goes to ``media``."""
        ...

    def end_orphan(self, call_sid: str, dialogs: list[Dialog]) -> None:
        """Hang up, from their stored ``dialogs``, the legs of a call whose engine died.
        Returns at once and may be called from any thread (e.g. after a commit)."""
        ...

    async def close(self) -> None: ...
