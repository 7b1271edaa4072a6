"""The ``sip`` carrier in a process of its own, beside the engine (``MASKLINE_SIP_PROCESS``).

In the engine's process the SIP socket and the RTP relay wait behind the engine's other
work on one loop: its writer's batches, the call runners, the collector over every live
call. At 100 calls/s that wait was most of the connect latency (A's 200 OK → B's INVITE;
docs/benchmarks.md). Here they have a process to themselves (``child.py``), optionally at
a real-time priority (``MASKLINE_SIP_REALTIME_PRIORITY``), and the engine keeps the
``Carrier`` interface: ``SipProcessCarrier`` sends each command to the SIP process, which
runs the usual ``SipCarrier``, and gives its leg events to the engine's sink.

B's INVITE still leaves at A's answer (``Dial.then``) without waiting for the engine. The
engine's ``dial`` of B comes a round trip later, not inside the sink's call, so the
carrier there holds the call's reports until it comes (``answers_taken_later``) and is
told when the engine has taken the answer in (``taken``): B, sent and then not asked
for, is cancelled.

The two processes talk over a socket pair that only they hold: each message is a
length-prefixed pickle of a tuple, written and read by the same installed code (the SIP
process is started with ``-P``: nothing from the working directory is imported). If the
SIP process dies, the engine ends the legs it had as lost (``_lose_all``), fails new
legs at once, and starts another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import socket
import struct
import sys
from datetime import datetime
from typing import Any

from maskline.kit.clock import Clock
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
# How long after a SIP process ended another is started (and again, while that fails).
RESTART_SEC = 1.0
# What the SIP process has no use for, and so is not given: it parses what anyone on
# the network sends.
_NOT_FOR_THE_SIP_PROCESS = {
    "secret_key": None,
    "metrics_token": None,
    "redis_url": None,
    "smtp_url": None,
    "razorpay_key_secret": None,
    "razorpay_webhook_secret": None,
}


def frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def receive(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None once the other end has closed."""
    try:
        length = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))[0]
        body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message = pickle.loads(body)  # noqa: S301 (our own process, over our own socket pair)
    if not isinstance(message, tuple):
        raise TypeError(f"not a message: {type(message).__name__}")
    return message


class SipProcessCarrier:
    """The engine's side: the ``Carrier`` whose legs the SIP process carries."""

    name = "sip"

    def __init__(self, settings: Settings, clock: Clock, *, is_pool_number: IsPoolNumber) -> None:
        if settings.sip_trunk is None:  # the settings refuse to load so
            raise ValueError("MASKLINE_SIP_TRUNK is required with the sip carrier")
        self._settings = settings.model_copy(update=_NOT_FOR_THE_SIP_PROCESS)
        self._clock = clock
        self._is_pool_number = is_pool_number
        # INVITEs to pool numbers (the SIP process asks us whether each is one).
        self.inbound_calls = 0
        self._sink: EventSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._lookups: set[asyncio.Task[None]] = set()
        self._running = False
        self._closing = False
        # Each call's legs asked for and not ended, and whether each has answered: what
        # is lost if the SIP process dies.
        self._legs: dict[str, dict[Leg, bool]] = {}
        # The answered ones' dialogs: a dead SIP process's legs may still be up at the
        # trunk, and the next one hangs them up from these (as for a dead engine's).
        self._dialogs: dict[tuple[str, Leg], Dialog] = {}
        self._left_up: list[tuple[str, list[Dialog]]] = []

    @property
    def ready(self) -> bool:
        """The SIP process said it was ready, and is still there."""
        process = self._process
        return self._running and process is not None and process.returncode is None

    @property
    def pid(self) -> int | None:
        """The SIP process's id, once started (for the logs and the operator)."""
        return None if self._process is None else self._process.pid

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        await self._spawn()

    async def _spawn(self) -> None:
        """Start a SIP process and wait until it is ready (or raise what stopped it)."""
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-P",
                    "-m",
                    "maskline.telephony.sip.child",
                    str(theirs.fileno()),
                    pass_fds=(theirs.fileno(),),
                )
            reader, self._writer = await asyncio.open_unix_connection(sock=ours)
            self._send(("start", self._settings))
            answer = await receive(reader)
        except BaseException:
            ours.close()
            await self._end_process()
            raise
        if answer is None or answer[0] != "ready":
            await self._end_process()
            if answer is not None and answer[0] == "failed":
                raise answer[1]
            raise OSError(f"the SIP process ended before it was ready ({answer!r})")
        self._running = True
        self._reading = asyncio.create_task(self._read(reader))
        log.info("the SIP process is ready", extra={"pid": self.pid})

    async def close(self) -> None:
        self._closing = True
        if self._restarting is not None:
            self._restarting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restarting
        self._send(("close",))
        await self._end_process()
        if self._reading is not None:
            try:
                await self._reading  # ends at the SIP process's end of the pair
            except Exception:
                log.exception("reading the SIP process failed")
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
        if not self.ready:
            # No SIP process (it died, another is starting): the leg fails now, as a
            # trunk failure, not inside the engine's own call.
            loop, sink = self._loop, self._sink
            assert loop is not None
            assert sink is not None
            failed = LegFailed(
                request.call_sid, request.leg, self._clock.now(), Cause.NORMAL_TEMPORARY_FAILURE
            )
            loop.call_soon(sink, failed)
            return
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
        if loop is None or not self.ready:
            log.error("cannot end a dead engine's call: the SIP process is not running")
            return
        loop.call_soon_threadsafe(self._send, ("orphan", call_sid, dialogs))

    def _send(self, message: tuple[Any, ...]) -> None:
        writer = self._writer
        if writer is None or writer.is_closing() or not (self._running or message[0] == "start"):
            if not self._closing and message[0] != "close":
                log.error("the SIP process is gone: %s not carried out", message[0])
            return
        writer.write(frame(message))

    # -- from the SIP process -----------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await receive(reader)) is not None:
                if message[0] == "event":
                    try:
                        self._take(message[1])
                    except Exception:  # as the loop would log a raising callback, and go on
                        log.exception("the engine could not take in a leg event")
                elif message[0] == "pool":
                    lookup = asyncio.create_task(self._look_up(message[1], message[2]))
                    self._lookups.add(lookup)
                    lookup.add_done_callback(self._lookups.discard)
        finally:
            self._running = False
            if self._writer is not None:
                self._writer.close()
            if not self._closing:
                log.critical("the SIP process ended: its calls' legs are ended as lost")
                self._restarting = asyncio.create_task(self._restart())
                try:
                    self._lose_all()
                except Exception:  # the engine's own failure: another process still starts
                    log.exception("the engine could not take in the lost legs")

    async def _restart(self) -> None:
        while not self._closing:
            await asyncio.sleep(RESTART_SEC)
            try:
                await self._end_process()  # reaped, if it has not been
                await self._spawn()
            except Exception:
                log.exception("cannot start another SIP process")
            else:
                left_up, self._left_up = self._left_up, []
                for call_sid, dialogs in left_up:
                    self._send(("orphan", call_sid, dialogs))
                return

    def _take(self, event: LegEvent) -> None:
        legs = self._legs.get(event.call_sid)
        if legs is not None and event.leg in legs:
            if isinstance(event, LegAnswered):
                legs[event.leg] = True
                if event.dialog is not None:
                    self._dialogs[(event.call_sid, event.leg)] = event.dialog
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
        self._dialogs.pop((call_sid, leg), None)
        legs = self._legs.get(call_sid)
        if legs is not None:
            legs.pop(leg, None)
            if not legs:
                del self._legs[call_sid]

    def _lose_all(self) -> None:
        """Every leg the SIP process carried is gone with it: an unanswered one failed
        (a trunk failure), a bridged call's media timed out (``RECOVERY_ON_TIMER_EXPIRE``).
        The answered ones are hung up at the trunk by the next SIP process."""
        sink = self._sink
        assert sink is not None
        now = self._clock.now()
        lost, self._legs = self._legs, {}
        dialogs, self._dialogs = self._dialogs, {}
        for call_sid, legs in lost.items():
            up = [dialogs[(call_sid, leg)] for leg in legs if (call_sid, leg) in dialogs]
            if up:
                self._left_up.append((call_sid, up))
            unanswered = [leg for leg, answered in legs.items() if not answered]
            for leg in unanswered:
                sink(LegFailed(call_sid, leg, now, Cause.NORMAL_TEMPORARY_FAILURE))
            if not unanswered:
                sink(LegMediaTimeout(call_sid, Leg.A, now))

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
