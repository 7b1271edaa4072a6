"""The ``sip`` carrier in a process of its own, beside the engine (``MASKLINE_SIP_PROCESS``).

In the engine's process the SIP socket and the RTP relay wait behind the engine's other
work on one loop: its writer's batches, the API when embedded, the collector's pauses
over every live call's objects. At 100 calls/s that wait is most of the connect latency
(A's 200 OK → B's INVITE; docs/benchmarks.md). Here they have a process to themselves,
optionally at a real-time priority (``MASKLINE_SIP_REALTIME_PRIORITY``), and the engine
keeps the ``Carrier`` interface unchanged: ``SipProcessCarrier`` sends each command to
the SIP process, which runs the usual ``SipCarrier``, and gives its events to the sink.

B's INVITE still leaves at A's answer (``Dial.then``) without waiting for the engine. The
engine's ``dial`` of B then comes after a round trip, not inside the sink's call, so the
carrier holds B's reports until it comes (``answers_taken_later``) and is told when the
engine has taken the answer in (``taken``): B, sent and then not asked for, is cancelled.

The two processes talk over a socket pair that only they hold: each message is a
length-prefixed pickle of a tuple, written and read by the same installed code. The SIP
process ignores SIGINT and SIGTERM (a terminal's Ctrl-C or a supervisor reaches the
whole group): it ends when the engine closes it, or when the engine's end of the pair
closes (the engine died), and then hangs up every leg it still carries. If the SIP
process dies, the engine ends the legs it had as lost (``_lose_all``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import time
from datetime import datetime
from typing import Any

from maskline.kit.clock import SystemClock
from maskline.settings import Settings
from maskline.telephony.carrier import Dial, EventSink, MediaSink
from maskline.telephony.events import (
    Cause,
    Dialog,
    Leg,
    LegAnswered,
    LegEvent,
    LegFailed,
    LegHungUp,
    LegMediaTimeout,
)
from maskline.telephony.media.recorder import SpoolRecorder
from maskline.telephony.sip.inbound import IsPoolNumber

log = logging.getLogger("maskline.sip")

_LENGTH = struct.Struct("!I")
# How long the SIP process may take to hang up its legs and stop once asked.
CLOSE_WAIT_SEC = 10.0
# The SIP process's collector runs only when it has something to find. A leg leaves no
# reference cycle behind (agents.py breaks sippy's), so its objects go by reference
# counting; every automatic collection would walk the live legs instead, for nothing:
# at 100 calls/s, 2-9 ms for each young one (3 a second) and 140 ms for an old one
# (docs/benchmarks.md). So automatic collection is off, and every GC_CHECK_SEC a full
# one runs if the tracked objects have grown by GC_GROWTH since the last: a growing
# load, or cycles made somewhere after all (logged, with what it found).
GC_CHECK_SEC = 10.0
GC_GROWTH = 200_000


def _frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def _receive(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None once the other end has closed."""
    try:
        length = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))[0]
        body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message = pickle.loads(body)  # noqa: S301 (our own process, over our own socket pair)
    assert isinstance(message, tuple)
    return message


class SipProcessCarrier:
    """The engine's side: the ``Carrier`` whose legs the SIP process carries."""

    name = "sip"

    def __init__(self, settings: Settings, *, is_pool_number: IsPoolNumber) -> None:
        if settings.sip_trunk is None:  # the settings refuse to load so
            raise ValueError("MASKLINE_SIP_TRUNK is required with the sip carrier")
        self._settings = settings
        self._is_pool_number = is_pool_number
        # INVITEs to pool numbers (the SIP process asks us whether each is one).
        self.inbound_calls = 0
        self._sink: EventSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._lookups: set[asyncio.Task[None]] = set()
        self._started = False
        self._closing = False
        # Each call's legs asked for and not ended, and whether each has answered: what
        # is lost if the SIP process dies.
        self._legs: dict[str, dict[Leg, bool]] = {}

    @property
    def ready(self) -> bool:
        """The SIP process said it was ready, and is still there."""
        process = self._process
        return self._started and process is not None and process.returncode is None

    @property
    def pid(self) -> int | None:
        """The SIP process's id, once started (for the logs and the operator)."""
        return None if self._process is None else self._process.pid

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "maskline.telephony.sip.process",
                    str(theirs.fileno()),
                    pass_fds=(theirs.fileno(),),
                )
            reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        except BaseException:
            ours.close()
            await self._end_process()
            raise
        self._send(("start", self._settings))
        answer = await _receive(reader)
        if answer is None or answer[0] != "ready":
            await self._end_process()
            if answer is not None and isinstance(answer[1], BaseException):
                raise answer[1]
            raise OSError("the SIP process ended before it was ready")
        self._started = True
        self._reading = asyncio.create_task(self._read(reader))
        log.info("the SIP process is ready", extra={"pid": self._process.pid})

    async def close(self) -> None:
        self._closing = True
        self._send(("close",))
        await self._end_process()
        if self._reading is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading  # ends at the SIP process's end of the pair
        for lookup in self._lookups:
            lookup.cancel()
        await asyncio.gather(*self._lookups, return_exceptions=True)

    async def _end_process(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), CLOSE_WAIT_SEC)
            except TimeoutError:
                log.error("the SIP process did not stop in %s s: killed", CLOSE_WAIT_SEC)
                process.kill()
                await process.wait()
        if self._writer is not None:
            self._writer.close()

    # -- commands from the engine -------------------------------------------------

    def dial(self, request: Dial) -> None:
        self._legs.setdefault(request.call_sid, {})[request.leg] = False
        self._send(("dial", request))

    def hangup(
        self, call_sid: str, leg: Leg, *, cause: Cause, at: datetime, tone: bool = False
    ) -> None:
        self._ended(call_sid, leg)
        self._send(("hangup", call_sid, leg, cause, at, tone))

    def bridge(self, call_sid: str, *, at: datetime, media: MediaSink | None) -> None:
        paths = None
        if isinstance(media, SpoolRecorder):
            paths = media.paths  # the SIP process writes on into the files made here
        elif media is not None:
            log.error("the SIP process can record only to the spool: the call goes unrecorded")
        if media is not None:
            media.close()
        self._send(("bridge", call_sid, at, paths))

    def end_orphan(self, call_sid: str, dialogs: list[Dialog]) -> None:
        """Safe from any thread: the message is written on the loop."""
        loop = self._loop
        if loop is None or not self._started:
            log.error("cannot end a dead engine's call: the SIP process is not running")
            return
        loop.call_soon_threadsafe(self._send, ("orphan", call_sid, dialogs))

    def _send(self, message: tuple[Any, ...]) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            if not self._closing:
                log.error("the SIP process is gone: %s not carried out", message[0])
            return
        writer.write(_frame(message))

    # -- from the SIP process -----------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while (message := await _receive(reader)) is not None:
            if message[0] == "event":
                try:
                    self._take(message[1])
                except Exception:  # as the loop would log a raising callback, and go on
                    log.exception("the engine could not take in a leg event")
            elif message[0] == "pool":
                lookup = asyncio.create_task(self._look_up(message[1], message[2]))
                self._lookups.add(lookup)
                lookup.add_done_callback(self._lookups.discard)
        self._started = False
        if not self._closing:
            log.critical("the SIP process ended: its calls' legs are ended as lost")
            self._lose_all()

    def _take(self, event: LegEvent) -> None:
        legs = self._legs.get(event.call_sid)
        if legs is not None and event.leg in legs:
            if isinstance(event, LegAnswered):
                legs[event.leg] = True
            elif isinstance(event, LegFailed | LegHungUp):
                self._ended(event.call_sid, event.leg)
        assert self._sink is not None
        try:
            self._sink(event)
        finally:
            if isinstance(event, LegAnswered):
                # After any dial the engine made as it took the answer in.
                self._send(("taken", event.call_sid))

    def _ended(self, call_sid: str, leg: Leg) -> None:
        legs = self._legs.get(call_sid)
        if legs is not None:
            legs.pop(leg, None)
            if not legs:
                del self._legs[call_sid]

    def _lose_all(self) -> None:
        """Every leg the SIP process carried is gone with it: an unanswered one failed
        (a trunk failure), a bridged call's media timed out (``RECOVERY_ON_TIMER_EXPIRE``)."""
        assert self._sink is not None
        now = SystemClock().now()
        for call_sid, legs in list(self._legs.items()):
            unanswered = [leg for leg, answered in legs.items() if not answered]
            event: LegEvent
            for leg in unanswered:
                event = LegFailed(call_sid, leg, now, Cause.NORMAL_TEMPORARY_FAILURE)
                self._sink(event)
            if not unanswered:
                self._sink(LegMediaTimeout(call_sid, Leg.A, now))
        self._legs.clear()

    async def _look_up(self, ask: int, number: str) -> None:
        found: bool | None
        try:
            found = await self._is_pool_number(number)
        except Exception:
            log.exception("cannot look up whether a called number is a pool number")
            found = None
        if found:
            self.inbound_calls += 1
        self._send(("pool", ask, found))


class _Engine:
    """The SIP process's side: the sink its carrier reports to, and the pool lookup."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._asks: dict[int, asyncio.Future[bool | None]] = {}
        self._next_ask = 0

    def emit(self, event: LegEvent) -> None:
        self._writer.write(_frame(("event", event)))

    async def is_pool_number(self, number: str) -> bool:
        self._next_ask += 1
        ask = self._next_ask
        answer: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._asks[ask] = answer
        try:
            self._writer.write(_frame(("pool", ask, number)))
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
    except (PermissionError, OSError) as exc:
        log.warning(
            "MASKLINE_SIP_REALTIME_PRIORITY=%d not applied (needs CAP_SYS_NICE): %s",
            priority,
            exc,
        )


async def _serve(sock: socket.socket) -> None:
    from maskline.kit.logging import configure_logging
    from maskline.telephony.sip.carrier import SipCarrier

    reader, writer = await asyncio.open_unix_connection(sock=sock)
    first = await _receive(reader)
    if first is None:
        return
    settings: Settings = first[1]
    configure_logging(settings.log_level, secrets=(settings.secret_key, settings.sip_password))
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
        writer.write(_frame(("failed", _portable(exc))))
        await writer.drain()
        writer.close()
        return
    gc.freeze()  # what was loaded before the first call: never walked
    gc.disable()
    collecting = asyncio.create_task(_collect_when_grown())
    writer.write(_frame(("ready",)))
    try:
        while (message := await _receive(reader)) is not None and message[0] != "close":
            try:
                _carry_out(carrier, engine, message)
            except Exception:
                log.exception("the SIP process could not carry out %s", message[0])
            # The engine's commands come in bursts (a batch of its writer's commits): one
            # a turn of the loop, which reads the SIP socket between turns.
            await asyncio.sleep(0)
    finally:
        collecting.cancel()
        engine.gone()
        await carrier.close()
        writer.close()


async def _collect_when_grown() -> None:
    while True:
        await asyncio.sleep(GC_CHECK_SEC)
        grown = gc.get_count()[0]  # allocations less deallocations since the last
        if grown >= GC_GROWTH:
            began = time.perf_counter()
            found = gc.collect()
            log.info(
                "collected %d unreachable objects in %.1f ms (%d more tracked)",
                found,
                (time.perf_counter() - began) * 1000,
                grown,
            )


def _carry_out(carrier: Any, engine: _Engine, message: tuple[Any, ...]) -> None:
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
