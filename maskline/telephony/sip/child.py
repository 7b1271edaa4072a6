"""The SIP process itself (``python -P -m maskline.telephony.sip.child FD``): the usual
``SipCarrier`` on a loop of its own, driven over the socket pair ``FD`` by its engine's
``SipProcessCarrier`` (``process.py``, which says why and how).

It ignores SIGINT and SIGTERM (a terminal's Ctrl-C or a supervisor reaches the whole
process group, and the engine's shutdown must still be able to hang up its legs): it ends
when the engine says ``close``, or when the engine's end of the pair closes (the engine
died), and then hangs up every leg it still carries.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import signal
import socket
import sys
import time
from typing import Any

from maskline.kit.clock import SystemClock
from maskline.settings import Settings
from maskline.telephony.events import LegEvent
from maskline.telephony.media.recorder import SpoolRecorder
from maskline.telephony.sip.carrier import SipCarrier
from maskline.telephony.sip.process import frame, receive

log = logging.getLogger("maskline.sip")

# The collector runs only when it may have something to find. A leg leaves no reference
# cycle behind (agents.py breaks sippy's), so its objects go by reference counting; an
# automatic collection would walk the live and lingering legs for nothing: at 100 calls/s
# four young and middle ones a second of 2-9 ms each, and old ones of 20-156 ms
# (docs/benchmarks.md). So automatic collection is off, and every GC_CHECK_SEC a full one
# runs if the tracked objects have grown by GC_GROWTH above their lowest count since the
# last (CPython counts allocations less deallocations, never below 0): a load growing,
# or cycles made somewhere after all (each collection is logged with what it found).
GC_CHECK_SEC = 10.0
GC_GROWTH = 200_000
# Commands carried out before the loop takes another turn (and reads the SIP socket):
# the engine's come in bursts (a batch of its writer's commits); what starts a leg or
# sends a request goes one a turn, the cheap acknowledgements with it.
HEAVY = frozenset({"dial", "hangup", "bridge", "orphan"})


class _Engine:
    """The engine, as the carrier here sees it: the sink it reports to, and the pool
    lookup for calls to masked numbers."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._asks: dict[int, asyncio.Future[bool | None]] = {}
        self._next_ask = 0

    def emit(self, event: LegEvent) -> None:
        if not self._writer.is_closing():  # the engine is gone: nobody to tell
            self._writer.write(frame(("event", event)))

    async def is_pool_number(self, number: str) -> bool:
        self._next_ask += 1
        ask = self._next_ask
        answer: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._asks[ask] = answer
        try:
            if self._writer.is_closing():
                raise ConnectionError("the engine is gone")
            self._writer.write(frame(("pool", ask, number)))
            found = await answer
        finally:
            self._asks.pop(ask, None)
        if found is None:
            raise LookupError("the engine could not look the number up")
        return found

    def answered(self, ask: int, found: bool | None) -> None:
        answer = self._asks.get(ask)
        if answer is not None and not answer.done():
            answer.set_result(found)

    def gone(self) -> None:
        for answer in self._asks.values():
            if not answer.done():
                answer.set_exception(ConnectionError("the engine is gone"))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives a pickle round trip, else an OSError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 (made here, just now)
    except Exception:
        return OSError(f"{type(exc).__name__}: {exc}")
    return exc


def _prioritise(priority: int) -> None:
    """Real-time scheduling for this process's threads (made after this call), if allowed."""
    if priority <= 0:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(priority))
    except OSError as exc:
        log.warning(
            "MASKLINE_SIP_REALTIME_PRIORITY=%d not applied (it needs CAP_SYS_NICE, or an "
            "RLIMIT_RTPRIO and a cgroup that allow it): %s",
            priority,
            exc,
        )


async def _serve(sock: socket.socket) -> None:
    from maskline.kit.logging import configure_logging

    reader, writer = await asyncio.open_unix_connection(sock=sock)
    first = await receive(reader)
    if first is None or first[0] != "start":
        return
    settings: Settings = first[1]
    configure_logging(settings.log_level, secrets=(settings.sip_password,))
    _prioritise(settings.sip_realtime_priority)
    engine = _Engine(writer)
    carrier = SipCarrier(
        settings,
        SystemClock(),
        is_pool_number=engine.is_pool_number,
        answers_taken_later=True,
    )
    try:
        await carrier.start(engine.emit)
    except Exception as exc:
        writer.write(frame(("failed", _portable(exc))))
        await writer.drain()
        writer.close()
        return
    gc.collect()  # what start-up left, before the rest is frozen
    gc.freeze()  # what was loaded before the first call: never walked again
    gc.disable()
    collecting = asyncio.create_task(_collect_when_grown())
    writer.write(frame(("ready",)))
    try:
        while (message := await receive(reader)) is not None and message[0] != "close":
            try:
                _carry_out(carrier, engine, message)
            except Exception:
                log.exception("the SIP process could not carry out %s", message[0])
            if message[0] in HEAVY:
                await asyncio.sleep(0)  # the loop reads the SIP socket before the next
    finally:
        collecting.cancel()
        engine.gone()
        await carrier.close()
        writer.close()


async def _collect_when_grown() -> None:
    while True:
        await asyncio.sleep(GC_CHECK_SEC)
        grown = gc.get_count()[0]
        if grown >= GC_GROWTH:
            began = time.perf_counter()
            found = gc.collect()
            log.info(
                "collected %d unreachable objects in %.1f ms, after %d more tracked",
                found,
                (time.perf_counter() - began) * 1000,
                grown,
            )


def _carry_out(carrier: SipCarrier, engine: _Engine, message: tuple[Any, ...]) -> None:
    kind = message[0]
    if kind == "dial":
        carrier.dial(message[1])
    elif kind == "taken":
        carrier.answer_taken(message[1])
    elif kind == "hangup":
        _, call_sid, leg, cause, at, tone = message
        carrier.hangup(call_sid, leg, cause=cause, at=at, tone=tone)
    elif kind == "bridge":
        _, call_sid, at, paths = message
        media = None
        if paths is not None:
            try:
                media = SpoolRecorder(paths, created=True)
            except OSError:
                log.exception("cannot open the recording spool")
        carrier.bridge(call_sid, at=at, media=media)
    elif kind == "orphan":
        carrier.end_orphan(message[1], message[2])
    elif kind == "pool":
        engine.answered(message[1], message[2])


def main() -> None:
    import uvloop

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(sys.argv[1]))
    uvloop.run(_serve(sock))


if __name__ == "__main__":
    main()
