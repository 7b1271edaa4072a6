"""The ``sip`` carrier (SPEC §8): two UAC legs towards the trunk and an RTP relay.

The engine's loop runs this object, the relay and the SIP stack; the SIP stack owns the
sippy user agents (``agents.py``). Only plain values and ``UacEvent``s cross.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    LegDialled,
    LegFailed,
    LegHungUp,
    LegMediaTimeout,
    LegRinging,
)
from maskline.telephony.media import tones
from maskline.telephony.media.g711 import G711
from maskline.telephony.media.recorder import FromTheBridge
from maskline.telephony.media.relay import MediaSession, RelayFull, UdpRelay
from maskline.telephony.sip import sdp
from maskline.telephony.sip.agents import Uac, send_bye
from maskline.telephony.sip.inbound import IsPoolNumber, PoolLine
from maskline.telephony.sip.stack import SipEndpoint, SipLoop, UacEvent

log = logging.getLogger("maskline.sip")

MEDIA_CHECK_SEC = 1.0
BYE_GRACE_SEC = 1.0
# A trunk that has sent nothing at all (not even 100 Trying) this long after our INVITE is
# down: 16 x T1, i.e. the INVITE and its first four retransmissions went unanswered. RFC
# 3261's Timer B (64 x T1 = 32 s) would come after the usual ring timeout. In the engine's
# clock; see docs/decisions.md.
NO_RESPONSE_SEC = 8.0
# What the leg reports then, as a SIP stack does for a transaction that timed out (RFC
# 3261 §8.1.3.1).
NO_RESPONSE_CODE = 408

# Final responses → SPEC §3 causes; other 4xx/5xx/6xx are a trunk failure.
CAUSES: dict[int, Cause] = {
    404: Cause.UNALLOCATED_NUMBER,
    604: Cause.UNALLOCATED_NUMBER,
    484: Cause.INVALID_NUMBER_FORMAT,
    408: Cause.NO_ANSWER,
    480: Cause.NO_ANSWER,
    486: Cause.USER_BUSY,
    600: Cause.USER_BUSY,
    603: Cause.CALL_REJECTED,
}


def cause_of(code: int | None, *, responded: bool = True) -> Cause:
    """The cause of a final response; a 408 before the trunk sent anything at all is the
    SIP stack's own timeout (Timer B), a trunk failure, not a party who did not answer."""
    if code is None or (code == NO_RESPONSE_CODE and not responded):
        return Cause.NORMAL_TEMPORARY_FAILURE
    return CAUSES.get(code, Cause.NORMAL_TEMPORARY_FAILURE)


@dataclass
class _Call:
    session: MediaSession
    uacs: dict[Leg, Uac] = field(default_factory=dict)
    codec: G711 | None = None
    ended: set[Leg] = field(default_factory=set)
    dialling: set[Leg] = field(default_factory=set)
    finishing: set[Leg] = field(default_factory=set)  # a tone plays before our BYE
    on_hold: set[Leg] = field(default_factory=set)
    answered: set[Leg] = field(default_factory=set)
    responded: set[Leg] = field(default_factory=set)  # the trunk sent something on it
    bridged: bool = False
    timed_out: bool = False
    # The leg to send at the answer of the one before it (``Dial.then``), and that leg once
    # sent, until the engine asks for it while it takes in that answer.
    follows: Leg | None = None
    unasked: Leg | None = None
    # The call's reports while that leg is unasked (the engine is in another process),
    # in the order they came: they follow its ``LegDialled`` once it is asked for.
    held: list[tuple[Leg, UacEvent, datetime]] = field(default_factory=list)


class SipCarrier:
    name = "sip"

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        is_pool_number: IsPoolNumber,
        answers_taken_later: bool = False,
    ) -> None:
        """``answers_taken_later``: the engine takes in a ``LegAnswered`` after the sink's
        call returns (it is in another process, ``sip/process.py``), and says so with
        ``answer_taken``; a leg sent at that answer waits for it, not for the call's end."""
        if settings.sip_trunk is None:  # the settings refuse to load so
            raise ValueError("MASKLINE_SIP_TRUNK is required with the sip carrier")
        self._settings = settings
        self._clock = clock
        self._answers_taken_later = answers_taken_later
        self._trunk = settings.sip_trunk
        self._bind = settings.sip_bind
        self._advertise = settings.advertised_host
        self.relay = UdpRelay(
            bind_host=self._bind.host,
            advertise=self._advertise,
            ports=settings.rtp_ports.even_ports,
        )
        self._sip = SipLoop()
        self._endpoint: SipEndpoint | None = None
        self._sink: EventSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls: dict[str, _Call] = {}
        self._opening: dict[str, asyncio.Task[_Call]] = {}
        self._new_calls = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._response_timers: set[asyncio.Task[None]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._next_slot = 0.0
        # Legs whose dial is waiting for its call's relay session, and those of them hung
        # up meanwhile.
        self._opening_legs: set[tuple[str, Leg]] = set()
        self._hung_up_early: set[tuple[str, Leg]] = set()
        # The trunk's IP addresses, resolved once at start: the only source whose
        # out-of-dialog INVITEs are taken (read by the SIP stack, never changed after).
        self._trunk_addresses: frozenset[IpAddress] = frozenset()
        # INVITEs to pool numbers answered with the announcement (SPEC §8, §11 metrics).
        self.inbound_calls = 0
        self._pool_line = PoolLine(
            sip=self._sip,
            relay=self.relay,
            is_pool_number=is_pool_number,
            counted=self._count_inbound,
        )

    # -- lifecycle ------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Started and not closed: the SIP socket is bound and read by the loop."""
        return self._endpoint is not None and self._sip.alive

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        self._trunk_addresses = await _resolve(*self._trunk)
        await self._pool_line.start()
        self._sip.start()
        host, port = self._bind
        try:
            self._endpoint = self._sip.run(
                lambda: SipEndpoint(
                    host,
                    port,
                    advertise=self._advertise,
                    on_request=self._out_of_dialog,
                    from_trunk=self._from_trunk,
                )
            )
        except BaseException:
            self._sip.stop()  # e.g. the SIP port is taken: leave nothing behind
            await self._pool_line.close()
            raise
        self._monitor = asyncio.create_task(self._watch_media())

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for timer in self._response_timers:
            timer.cancel()
        await asyncio.gather(*self._response_timers, return_exceptions=True)
        for call in self._calls.values():
            for leg, uac in call.uacs.items():
                if leg not in call.ended:
                    self._sip.call(uac.hangup)
        if self._calls:
            await asyncio.sleep(BYE_GRACE_SEC)  # let the BYEs and CANCELs go out
        await self._pool_line.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=BYE_GRACE_SEC)
        if self._endpoint is not None:
            await asyncio.sleep(0)  # the SIP stack's queued calls first (``run`` is at once)
            self._sip.run(self._endpoint.shutdown)
        self._sip.stop()
        # A session still being opened would be the relay's only after its close: stopped
        # first (an open cancelled half-way closes what it bound).
        opening = list(self._opening.values())
        for task in opening:
            task.cancel()
        await asyncio.gather(*opening, return_exceptions=True)
        await self.relay.close()

    # -- commands from the engine -----------------------------------------------

    def dial(self, request: Dial) -> None:
        call = self._calls.get(request.call_sid)
        if call is not None and call.unasked is request.leg:
            # Its INVITE went out with the answer before it, as that answer was read.
            call.unasked = None
            self._slot(request.leg)
            if self._answers_taken_later:
                self._dialled(request.call_sid, call, request.leg)
                self._release_held(request.call_sid, call)
            else:  # inside the sink's call: its LegDialled follows it
                asyncio.get_running_loop().call_soon(
                    self._dialled, request.call_sid, call, request.leg
                )
            return
        self._opening_legs.add((request.call_sid, request.leg))
        task = asyncio.create_task(self._dial(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _slot(self, leg: Leg) -> float:
        """Seconds to wait before this leg's INVITE, pacing new legs to MASKLINE_SIP_MAX_CPS.

        B legs never wait (A is already listening); they still use up a slot, so
        the A legs behind them wait longer and the rate holds over any second.
        """
        now = asyncio.get_running_loop().time()
        start = now if leg is Leg.B else max(now, self._next_slot)
        self._next_slot = max(self._next_slot, start) + 1 / self._settings.sip_max_cps
        return start - now

    async def _dial(self, request: Dial) -> None:
        sid, leg = request.call_sid, request.leg
        try:
            if leg is Leg.B:
                call = await self._call(sid)
            else:
                # One new call's ports and INVITE at a time, each from a turn of the loop of
                # its own: the loop reads the sockets between turns, so an answer waiting
                # there (and B's INVITE with it) does not wait for a whole burst of new
                # calls (an engine's claim of fifty held one for up to 50 ms).
                async with self._new_calls:
                    await asyncio.sleep(0)
                    call = await self._call(sid)
        except RelayFull:
            log.error("no RTP ports left: failing the leg")
            self._emit(LegFailed(sid, leg, self._clock.now(), Cause.NORMAL_TEMPORARY_FAILURE))
            return
        finally:
            self._opening_legs.discard((sid, leg))
            hung_up_early = (sid, leg) in self._hung_up_early
            self._hung_up_early.discard((sid, leg))
        if hung_up_early:
            call.ended.add(leg)
        call.dialling.add(leg)
        try:
            wait = self._slot(leg)
            if wait > 0:
                await asyncio.sleep(wait)
            if leg not in call.ended:  # not hung up while it waited for its slot
                self._invite(call, request)
        except Exception:
            # Its ring timer starts only once the INVITE is out: the leg must end here.
            log.exception("cannot send the INVITE: failing the leg")
            if leg not in call.ended:
                call.ended.add(leg)
                cause = Cause.NORMAL_TEMPORARY_FAILURE
                self._emit(LegFailed(sid, leg, self._clock.now(), cause))
        finally:
            call.dialling.discard(leg)
            self._close_if_done(sid, call)

    def _invite(self, call: _Call, request: Dial) -> None:
        sid, leg = request.call_sid, request.leg
        # B is offered the codec A chose, so the relay never has to transcode.
        codecs = (call.codec,) if leg is Leg.B and call.codec else (G711.PCMU, G711.PCMA)
        offer = sdp.offer(call.session.local(leg), codecs)
        then = None if request.then is None else self._follower(call, request.then)

        def invite() -> Uac:
            uac = self._uac(request, offer, then)
            uac.start()
            return uac

        call.uacs[leg] = self._sip.run(invite)
        self._dialled(sid, call, leg)

    def _uac(
        self,
        request: Dial,
        offer: str,
        then: Callable[[str | None], Uac | None] | None = None,
    ) -> Uac:
        """The leg's user agent, not started (in the SIP stack)."""
        settings = self._settings
        loop = self._loop
        assert loop is not None
        sid, leg = request.call_sid, request.leg

        def report(event: UacEvent) -> None:
            loop.call_soon(self._on_uac_event, sid, leg, event)

        endpoint = self._endpoint
        assert endpoint is not None
        return Uac(
            endpoint,
            trunk=self._trunk,
            caller=settings.sip_caller_format.format(masked=request.caller_id),
            callee=settings.sip_dial_format.format(number=request.number),
            offer=offer,
            credentials=(settings.sip_username, settings.sip_password),
            report=report,
            then=then,
        )

    def _follower(self, call: _Call, request: Dial) -> Callable[[str | None], Uac | None]:
        """Builds ``request``'s leg in the SIP stack from the answer before it, offered
        the codec that answer chose (None if it chose none: the engine's dial then sends
        it the usual way)."""
        local = call.session.local(request.leg)
        call.follows = request.leg

        def build(answer: str | None) -> Uac | None:
            try:
                remote = sdp.parse(answer) if answer else None
            except ValueError:
                return None
            if remote is None or remote.codec is None:
                return None
            return self._uac(request, sdp.offer(local, (remote.codec,)))

        return build

    def _dialled(self, sid: str, call: _Call, leg: Leg) -> None:
        """The leg's INVITE is out: its ring time starts, and the trunk must answer it."""
        if leg in call.ended or self._calls.get(sid) is not call:
            return
        self._emit(LegDialled(sid, leg, self._clock.now()))
        timer = asyncio.create_task(self._expect_response(sid, call, leg))
        self._response_timers.add(timer)
        timer.add_done_callback(self._response_timers.discard)

    async def _expect_response(self, sid: str, call: _Call, leg: Leg) -> None:
        """Fail the leg as a trunk failure if the trunk sends nothing at all in time."""
        await self._clock.sleep(NO_RESPONSE_SEC)
        if leg in call.responded or leg in call.ended or self._calls.get(sid) is not call:
            return
        log.warning("no response from the trunk to an INVITE: failing the leg")
        call.ended.add(leg)
        self._sip.call(call.uacs[leg].hangup)
        self._emit(
            LegFailed(sid, leg, self._clock.now(), Cause.NORMAL_TEMPORARY_FAILURE, NO_RESPONSE_CODE)
        )
        self._close_if_done(sid, call)

    async def _call(self, sid: str) -> _Call:
        call = self._calls.get(sid)
        if call is not None:
            return call
        opening = self._opening.get(sid)
        if opening is None:
            opening = asyncio.create_task(self._open(sid))
            self._opening[sid] = opening
        try:
            return await opening
        finally:
            self._opening.pop(sid, None)

    async def _open(self, sid: str) -> _Call:
        call = _Call(await self.relay.open(sid))
        self._calls[sid] = call
        return call

    def hangup(
        self, call_sid: str, leg: Leg, *, cause: Cause, at: datetime, tone: bool = False
    ) -> None:
        call = self._calls.get(call_sid)
        if call is None:
            if (call_sid, leg) in self._opening_legs:
                # Its dial is still opening the relay session: it will see this and stop.
                self._hung_up_early.add((call_sid, leg))
            return  # else nothing of it is left here (e.g. a call already closed)
        if leg in call.ended:
            return
        call.ended.add(leg)
        unasked = call.unasked is leg  # hung up instead of asked for: not reported
        if unasked:
            call.unasked = None
        uac = call.uacs.get(leg)
        if uac is None:
            self._close_if_done(call_sid, call)
        elif tone and leg in call.answered and call.codec is not None:
            # B could not be reached: A hears a short busy tone, then our BYE.
            call.finishing.add(leg)
            playing = call.session.play(leg, tones.busy(call.codec), repeat=False)
            task = asyncio.create_task(self._hang_up_after(call_sid, call, leg, playing))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            uac.drop_follower()  # now: its answer may be waiting in the socket
            self._sip.call(uac.hangup)
            self._close_if_done(call_sid, call)
        if unasked:
            self._release_held(call_sid, call)

    async def _hang_up_after(
        self, call_sid: str, call: _Call, leg: Leg, playing: asyncio.Task[None]
    ) -> None:
        uac = call.uacs[leg]
        with contextlib.suppress(asyncio.CancelledError):
            await playing
        self._sip.call(uac.hangup)
        call.finishing.discard(leg)
        self._close_if_done(call_sid, call)

    def bridge(self, call_sid: str, *, at: datetime, media: MediaSink | None) -> None:
        call = self._calls.get(call_sid)
        if call is None:
            if media is not None:
                media.close()
            return
        call.bridged = True
        call.session.forward(Leg.A)
        call.session.forward(Leg.B)
        if media is not None:
            call.session.record(FromTheBridge(media, since=time.monotonic()))

    def end_orphan(self, call_sid: str, dialogs: list[Dialog]) -> None:
        """BYE each stored dialog of a call whose engine died (SPEC §8). Returns at once;
        safe from any thread (the BYEs are built and sent on the loop)."""
        endpoint = self._endpoint
        if endpoint is None:
            log.error("cannot end a dead engine's call: the SIP stack is not running")
            return
        credentials = (self._settings.sip_username, self._settings.sip_password)
        for dialog in dialogs:

            def done(code: int | None, dialog: Dialog = dialog) -> None:
                log.info(
                    "BYE for a dead engine's leg answered %s",
                    code,
                    extra={"call_sid": call_sid, "sip_call_id": dialog.call_id},
                )

            self._sip.call(
                lambda d=dialog, cb=done: send_bye(endpoint, d, credentials=credentials, done=cb)
            )

    def _count_inbound(self) -> None:
        self.inbound_calls += 1

    # -- events from the SIP stack --------------------------------------------

    def _on_uac_event(self, sid: str, leg: Leg, event: UacEvent) -> None:
        call = self._calls.get(sid)
        then = event.then
        if then is not None:
            assert isinstance(then, Uac)
            if call is None or call.follows is None or call.follows in call.ended:
                self._sip.call(then.hangup)  # the call, or that leg, ended already
            else:
                call.uacs[call.follows] = then
                call.unasked = call.follows
                if leg in call.ended:
                    self._hang_up_unasked(sid, call)
        if call is None:
            return
        if self._answers_taken_later and ((call.unasked is not None and then is None) or call.held):
            # Reported once the engine asks for that leg (or it ends): after its
            # ``LegDialled``, in the order the call's reports came, at the time each came.
            call.held.append((leg, event, self._clock.now()))
            return
        self._take_uac_event(sid, call, leg, event)

    def _take_uac_event(
        self, sid: str, call: _Call, leg: Leg, event: UacEvent, at: datetime | None = None
    ) -> None:
        now = at or self._clock.now()
        remote = _remote(event.sdp)
        if event.kind == "dead":
            call.ended.add(leg)
            self._close_if_done(sid, call)
            return
        if leg in call.ended:
            return  # we ended this leg; its last responses change nothing
        responded = leg in call.responded
        if event.kind in ("ring", "connect"):
            call.responded.add(leg)
        if event.kind == "ring" and event.code is not None and event.code > 100:
            if remote is not None and remote.codec is not None and leg is Leg.B:
                # Early media (183): B's announcements and ringing reach A.
                call.session.set_remote(leg, remote.endpoint, remote.codec)
                call.session.forward(Leg.B)
            self._emit(LegRinging(sid, leg, now))
        elif event.kind == "connect":
            if remote is not None and remote.codec is not None:
                call.session.set_remote(leg, remote.endpoint, remote.codec)
                call.codec = call.codec or remote.codec
            call.answered.add(leg)
            if leg is Leg.A and call.codec is not None:
                # A hears ringback until B's early media or the bridge replaces it.
                call.session.play(Leg.A, tones.ringback(call.codec), repeat=True)
            sent_sec = event.then_sec if call.unasked is not None else None
            try:
                self._emit(LegAnswered(sid, leg, now, dialog=event.dialog, next_sent_sec=sent_sec))
            finally:
                if not self._answers_taken_later:
                    self._hang_up_unasked(sid, call)
        elif event.kind == "fail":
            call.ended.add(leg)
            cause = cause_of(event.code, responded=responded)
            self._emit(LegFailed(sid, leg, now, cause, event.code))
        elif event.kind == "bye":
            call.ended.add(leg)
            self._emit(LegHungUp(sid, leg, now))
        elif event.kind == "update" and remote is not None:
            if remote.on_hold:
                call.on_hold.add(leg)
            else:
                call.on_hold.discard(leg)
                if remote.codec is not None:
                    call.session.set_remote(leg, remote.endpoint, remote.codec)

    def answer_taken(self, call_sid: str) -> None:
        """The engine has taken in this call's last ``LegAnswered`` (``answers_taken_later``):
        a leg sent at that answer and still not asked for is cancelled now."""
        call = self._calls.get(call_sid)
        if call is not None:
            self._hang_up_unasked(call_sid, call)

    def _hang_up_unasked(self, sid: str, call: _Call) -> None:
        """A leg sent at an answer that the engine did not ask for as it took the answer
        in (it had ended the call, or let it go): cancelled at once."""
        leg = call.unasked
        if leg is not None:
            log.info(
                "the leg sent at the answer before it was not asked for: cancelled",
                extra={"call_sid": sid, "leg": leg.value},
            )
            self.hangup(sid, leg, cause=Cause.NORMAL_CLEARING, at=self._clock.now())
            if call.unasked is leg:  # it had ended already: the hang-up did nothing
                call.unasked = None
                self._release_held(sid, call)

    def _release_held(self, sid: str, call: _Call) -> None:
        """The reports held while a leg was unasked, taken in now and in order (after
        that leg's ``LegDialled``, when it was asked for)."""
        held, call.held = call.held, []
        for leg, event, at in held:
            if self._calls.get(sid) is not call:
                return  # closed by one of them: nothing of it is left to report
            try:
                self._take_uac_event(sid, call, leg, event, at)
            except Exception:  # one report's failure loses that report, not the rest
                log.exception("cannot take in a held report of the call")

    def _out_of_dialog(self, req: Any, transaction: Any) -> Any:
        """Requests that belong to no leg of ours (run by the SIP stack). A new INVITE
        from the trunk is someone calling a number back: ``PoolLine`` decides what it
        hears. A new INVITE from anywhere else is refused 403 before anything is
        allocated for it (and is not counted)."""
        method = req.getMethod()
        if method == "OPTIONS":
            return (req.genResponse(200, "OK"), None, None)
        if req.getHFBody("to").getTag() is not None:
            return (req.genResponse(481, "Call/Transaction Does Not Exist"), None, None)
        if method == "INVITE" and not self._from_trunk(req):
            return (req.genResponse(403, "Forbidden"), None, None)
        if method == "INVITE" and self._endpoint is not None:
            return self._pool_line.take(self._endpoint, req, transaction)
        return (req.genResponse(480, "Temporarily Unavailable"), None, None)

    def _from_trunk(self, req: Any) -> bool:
        """Whether the request's packet came from one of the trunk's IP addresses."""
        try:
            host, _port = req.getSource()
            return _ip(str(host)) in self._trunk_addresses
        except (TypeError, ValueError):
            return False

    def _emit(self, event: Any) -> None:
        assert self._sink is not None
        self._sink(event)

    def _close_if_done(self, sid: str, call: _Call) -> None:
        """Free the call's ports once every leg it dialled has ended and none is pending."""
        if call.dialling or call.finishing or not call.ended:
            return
        if not set(call.uacs) <= call.ended:
            return
        if self._calls.get(sid) is call:
            self._calls.pop(sid, None)
            task = asyncio.create_task(call.session.close())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _watch_media(self) -> None:
        """End bridged calls whose leg has sent nothing for MASKLINE_RTP_TIMEOUT_SEC."""
        while True:
            await asyncio.sleep(MEDIA_CHECK_SEC)
            # In a function of its own: this loop's variables would hold the last call
            # looked at (its legs, its relay session) until the next pass.
            self._end_silent_calls()

    def _end_silent_calls(self) -> None:
        limit = self._settings.rtp_timeout_sec
        for sid, call in list(self._calls.items()):
            if not call.bridged or call.timed_out:
                continue
            for leg in (Leg.A, Leg.B):
                if leg in call.on_hold or leg in call.ended:
                    continue
                if call.session.idle_seconds(leg) > limit:
                    call.timed_out = True
                    self._emit(LegMediaTimeout(sid, leg, self._clock.now()))
                    break


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IpAddress:
    """An address as received, with an IPv4-mapped IPv6 address taken as the IPv4 one."""
    address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def _resolve(host: str, port: int) -> frozenset[IpAddress]:
    """Every IP address ``host`` (MASKLINE_SIP_TRUNK's) resolves to; a clear error if none."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise OSError(f"cannot resolve MASKLINE_SIP_TRUNK host {host!r}: {exc}") from exc
    return frozenset(_ip(str(info[4][0])) for info in found)


def _remote(text: str | None) -> sdp.RemoteMedia | None:
    if not text:
        return None
    try:
        return sdp.parse(text)
    except ValueError:
        log.warning("unreadable SDP from the trunk")
        return None
