"""The sandbox phone network (SPEC §8): magic numbers, scalable time, synthetic audio.

Numbers ending 0000 never answer, 0001 are busy (486), 0002 do not exist (404),
0003 reject (603); every other number rings ``ring_sec``, answers, and speaks
a tone. Once bridged, the simulated A hangs up after ``talk_sec``. Each event
carries the simulated moment it happened, so durations are exact however the
event loop is scheduled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from maskline.kit.clock import Clock, sleep_until
from maskline.telephony.carrier import Dial, EventSink, MediaSink
from maskline.telephony.events import (
    Cause,
    Dialog,
    Leg,
    LegAnswered,
    LegDialled,
    LegEvent,
    LegFailed,
    LegHungUp,
    LegRinging,
)
from maskline.telephony.sim.audio import FRAME_MS, TONE_HZ, tone_frames

log = logging.getLogger("maskline.sim")

FAIL_AFTER = timedelta(milliseconds=500)
MEDIA_TICK_SEC = 0.2
MEDIA_LAG = timedelta(seconds=1)
# Magic endings: (cause, SIP code it imitates, rings first?)
MAGIC: dict[str, tuple[Cause, int, bool]] = {
    "0001": (Cause.USER_BUSY, 486, False),
    "0002": (Cause.UNALLOCATED_NUMBER, 404, False),
    "0003": (Cause.CALL_REJECTED, 603, True),
}
NEVER_ANSWERS = "0000"


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """What the sim did, for the tests and the benchmarks to read."""

    call_sid: str
    action: str
    leg: Leg | None
    detail: str = ""


class _Media:
    """Pumps both parties' tones into a sink while a call is bridged.

    The pump stays a little behind the clock (and never passes the simulated A's
    own hang-up), so that the hang-up, which names the moment the call ended,
    can always complete the audio to exactly that moment.
    """

    def __init__(self, clock: Clock, sink: MediaSink, start: datetime, end: datetime) -> None:
        self._clock = clock
        self._sink = sink
        self._start = start
        self._end = end
        self._sent = 0
        self._task = asyncio.create_task(self._pump())

    def _catch_up(self, until: datetime) -> None:
        until = min(until, self._end)
        due = int((until - self._start).total_seconds() * 1000) // FRAME_MS
        if due > self._sent:
            count = due - self._sent
            for leg in (Leg.A, Leg.B):
                self._sink.on_audio(leg, tone_frames(TONE_HZ[leg.value], self._sent, count))
            self._sent = due

    async def _pump(self) -> None:
        while True:
            await self._clock.sleep(MEDIA_TICK_SEC)
            self._catch_up(self._clock.now() - MEDIA_LAG)

    def stop(self, at: datetime) -> None:
        self._task.cancel()
        self._catch_up(at)
        self._sink.close()


class SimCarrier:
    name = "sim"

    def __init__(self, clock: Clock, *, ring_sec: float, talk_sec: float) -> None:
        self._clock = clock
        self._ring = timedelta(seconds=ring_sec)
        self._talk = timedelta(seconds=talk_sec)
        self._sink: EventSink | None = None
        self._tasks: dict[tuple[str, Leg], asyncio.Task[None]] = {}
        self._talk_tasks: dict[str, asyncio.Task[None]] = {}
        self._media: dict[str, _Media] = {}
        self.trace: deque[TraceEntry] = deque(maxlen=100_000)
        self.inbound_calls = 0  # the sim's pool numbers are never called back
        self._running = False

    @property
    def ready(self) -> bool:
        return self._running

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._running = True

    def _emit(self, event: LegEvent) -> None:
        assert self._sink is not None, "start() the carrier first"
        self._sink(event)

    def dial(self, request: Dial) -> None:
        self.trace.append(TraceEntry(request.call_sid, "dial", request.leg, request.number))
        key = (request.call_sid, request.leg)
        self._tasks[key] = asyncio.create_task(self._leg(request))

    async def _leg(self, request: Dial) -> None:
        sid, leg, start = request.call_sid, request.leg, request.at
        suffix = request.number[-4:]
        try:
            self._emit(LegDialled(sid, leg, start))
            magic = MAGIC.get(suffix)
            if magic is not None and not magic[2]:
                await sleep_until(self._clock, start + FAIL_AFTER)
                self._emit(LegFailed(sid, leg, start + FAIL_AFTER, magic[0], magic[1]))
                return
            self._emit(LegRinging(sid, leg, start))
            if suffix == NEVER_ANSWERS:
                await asyncio.Event().wait()  # rings until the engine cancels it
            answer_at = start + self._ring
            await sleep_until(self._clock, answer_at)
            if magic is not None:
                self._emit(LegFailed(sid, leg, answer_at, magic[0], magic[1]))
                return
            self._emit(LegAnswered(sid, leg, answer_at))
        finally:
            self._tasks.pop((sid, leg), None)

    def hangup(
        self, call_sid: str, leg: Leg, *, cause: Cause, at: datetime, tone: bool = False
    ) -> None:
        detail = f"{cause.value}{' +tone' if tone else ''}"
        self.trace.append(TraceEntry(call_sid, "hangup", leg, detail))
        task = self._tasks.pop((call_sid, leg), None)
        if task is not None:
            task.cancel()
        if leg is Leg.A:
            talk = self._talk_tasks.pop(call_sid, None)
            if talk is not None:
                talk.cancel()
        media = self._media.pop(call_sid, None)
        if media is not None:
            media.stop(at)

    def bridge(self, call_sid: str, *, at: datetime, media: MediaSink | None) -> None:
        self.trace.append(TraceEntry(call_sid, "bridge", None))
        if media is not None:
            self._media[call_sid] = _Media(self._clock, media, at, at + self._talk)
        self._talk_tasks[call_sid] = asyncio.create_task(self._talk_then_hang_up(call_sid, at))

    async def _talk_then_hang_up(self, call_sid: str, bridged_at: datetime) -> None:
        end = bridged_at + self._talk
        await sleep_until(self._clock, end)
        self._talk_tasks.pop(call_sid, None)
        self._emit(LegHungUp(call_sid, Leg.A, end))

    def end_orphan(self, call_sid: str, dialogs: list[Dialog]) -> None:
        """Nothing to do: the sim's calls live in the engine process that died with them."""

    async def close(self) -> None:
        self._running = False
        tasks = [*self._tasks.values(), *self._talk_tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for call_sid, media in list(self._media.items()):
            media.stop(self._clock.now())
            self._media.pop(call_sid, None)
        self._tasks.clear()
        self._talk_tasks.clear()
