"""The sippy user agents behind the sip carrier. Everything here lives and runs in the SIP
stack only (``stack.SipLoop``); what leaves it is plain data (``UacEvent``, ``Dialog``).

- ``Uac``: one outbound leg towards the trunk.
- ``InboundCall``: a call to a pool number, answered, given an announcement, then ended.
- ``send_bye``: BYE for a stored dialog, for a call whose engine died.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from maskline.telephony.events import Dialog
from maskline.telephony.sip.stack import SipEndpoint, UacEvent

log = logging.getLogger("maskline.sip")

USER_AGENT = "maskline"
# How long an ended leg's UA stays in sippy's Disconnected state, where a BYE that
# crossed ours is still answered 200 (sippy's default: 32 s). A retransmission of a
# request already answered gets the same answer again from sippy's transaction layer (its
# cache of answers, kept 32 s as RFC 3261's Timer J), whatever the UA's state; a new
# in-dialog request after this is answered 481, as RFC 3261 asks of a dialog that no
# longer exists. Every object of the leg (its UA, transactions, headers) is held until
# then: 32 s of legs at 100 calls/s was half a million objects, which every collection
# of the garbage collector walked (docs/decisions.md).
DISCONNECTED_LINGER_SEC = 4.0
Report = Callable[[UacEvent], None]


@cache
def _ua_class() -> Any:
    """sippy's UA, answering UPDATE (RFC 3311) in a dialog instead of ignoring it, and
    taking in-dialog requests from the trunk only.

    sippy has no UPDATE handler: the request gets no answer at all, and the far end
    retransmits until it gives up and tears the call down. Here an UPDATE is answered
    at once (200, our SDP if it carried an offer) and reported like a re-INVITE.

    sippy matches an in-dialog request by Call-ID and tags alone, so anyone who learnt
    them could move the call's media (re-INVITE, UPDATE) or end it; a request whose
    packet did not come from the trunk is dropped unanswered, as out-of-dialog INVITEs
    from elsewhere are refused (``SipEndpoint.from_trunk``).
    """
    from sippy.MsgBody import MsgBody
    from sippy.SipHeader import SipHeader
    from sippy.UA import UA

    class UpdatingUA(UA):  # type: ignore[misc]
        godead_timeout = DISCONNECTED_LINGER_SEC
        on_update: Callable[[str | None], str | None] | None = None
        from_trunk: Callable[[Any], bool] | None = None

        def cleanup(self) -> None:
            # sippy's last word on a dead UA, after it has dropped its own callbacks: ours
            # go too. ``on_update`` is the leg's, which holds this UA: a cycle that would
            # keep each ended leg for the garbage collector instead of freeing it at once.
            self.on_update = None
            self.from_trunk = None
            super().cleanup()

        def recvRequest(self, req: Any, sip_t: Any) -> Any:
            try:
                return self._take_request(req, sip_t)
            finally:
                # sippy's handler gives the request a closure (``sendResponse``) that
                # holds the request itself and this UA: a cycle, so every leg's BYE kept
                # the leg for the collector's old generation, whose passes walk every
                # live leg (docs/benchmarks.md). It is called only while the request is
                # handled, above.
                vars(req).pop("sendResponse", None)

        def _take_request(self, req: Any, sip_t: Any) -> Any:
            if self.from_trunk is not None and not self.from_trunk(req):
                log.warning(
                    "in-dialog %s from %s, not the trunk: dropped",
                    req.getMethod(),
                    req.getSource(),
                )
                _forget(sip_t)
                return None
            if req.getMethod() != "UPDATE" or self.state is None or self.state.dead:
                return super().recvRequest(req, sip_t)
            cseq = req.getHFBody("cseq").getCSeqNum()
            last: int | None = getattr(self, "rCSeq", None)
            if last is not None and last >= cseq:
                return (req.genResponse(500, "Server Internal Error"), None, None)
            self.rCSeq = cseq
            body = req.getBody()
            answer = self.on_update(None if body is None else str(body)) if self.on_update else None
            resp = req.genResponse(
                200, "OK", body=None if answer is None else MsgBody(answer), server=USER_AGENT
            )
            if self.lContact is not None:
                resp.appendHeader(SipHeader(name="contact", body=self.lContact))
            return (resp, None, None)

    return UpdatingUA


def _forget(transaction: Any) -> None:
    """Let sippy drop a server transaction we give no answer (an INVITE's keeps a timer
    that would answer 487 minutes later)."""
    for name in ("teA", "teD", "teE", "teF", "teG"):
        timer = getattr(transaction, name, None)
        if timer is not None:
            timer.cancel()
            setattr(transaction, name, None)


def dialog_of(ua: Any) -> Dialog | None:
    """The UA's confirmed dialog as plain data (what sippy would use for its own BYE)."""
    try:
        (host, port), _transport = ua.rAddr
        return Dialog(
            call_id=str(ua.cId),
            local=str(ua.lUri),
            remote=str(ua.rUri),
            local_tag=str(ua.lUri.getTag() or ""),
            remote_tag=str(ua.rUri.getTag() or ""),
            remote_target=str(ua.rTarget),
            route_set=tuple(str(route) for route in ua.routes),
            cseq=int(ua.lCSeq),
            next_hop=(str(host), int(port)),
        )
    except Exception:
        log.exception("cannot read the dialog of a leg")
        return None


def _contact() -> Any:
    """Our Contact: our address (as advertised, see ``SipEndpoint``) and no display name.

    sippy's default has the display name "Anonymous"; it tells the trunk nothing, and some
    peers (SIPp's [next_url] among them) copy the whole value into a Request-URI.
    """
    from sippy.SipContact import SipContact

    contact = SipContact()
    contact.address.name = None
    return contact


def _text(body: Any) -> str | None:
    """The remote SDP as text (parsed again on the engine's side)."""
    return None if body is None else str(body)


class Uac:
    """One outbound leg's user agent; its INVITE goes out on ``start``.

    ``then`` builds the leg that follows this one's answer, from the answer's SDP (None:
    nothing to follow with). It runs as the 200 OK is taken in: the new
    leg's INVITE goes out at once and the leg rides on the ``connect`` report, with the
    time from the 200 OK's arrival to that INVITE; the new leg's own reports are held
    until that report is made, so they come after it. ``drop_follower`` (from any
    thread) or a hang-up before the answer drops the builder.
    """

    def __init__(
        self,
        endpoint: SipEndpoint,
        *,
        trunk: tuple[str, int],
        caller: str,
        callee: str,
        offer: str,
        credentials: tuple[str | None, str | None],
        report: Report,
        then: Callable[[str | None], Uac | None] | None = None,
    ) -> None:
        from sippy.CCEvents import CCEventTry
        from sippy.MsgBody import MsgBody
        from sippy.SipCallId import SipCallId
        from sippy.SipHeader import SipHeader

        self._sink = report
        self._held: list[UacEvent] | None = None
        self._offer = offer
        self._then = then
        username, password = credentials
        self.ua: Any = _ua_class()(
            endpoint.config,
            event_cb=self._event,
            nh_address=trunk,
            username=username,
            password=password,
            dead_cbs=(self._dead,),
        )
        self.ua.local_ua = USER_AGENT
        self.ua.lContact = _contact()
        self.ua.on_update = self._on_update
        self.ua.from_trunk = endpoint.from_trunk
        try_event = CCEventTry((SipCallId(), caller, callee, MsgBody(offer), None, None))
        identity = f"<sip:{caller}@{trunk[0]};user=phone>"
        try_event.extra_headers = (SipHeader(name="p-asserted-identity", bodys=identity),)
        self._try: Any = try_event

    def start(self) -> None:
        """Send the INVITE."""
        try_event, self._try = self._try, None
        if try_event is not None:
            self.ua.recvEvent(try_event)

    def drop_follower(self) -> None:
        """Build no leg at this one's answer (safe from any thread: one attribute)."""
        self._then = None

    def _report(self, event: UacEvent) -> None:
        if self._held is not None:
            self._held.append(event)
        else:
            self._sink(event)

    def _release(self) -> None:
        """Report what was held (a leg started before the report that carries it)."""
        held, self._held = self._held, None
        for event in held or ():
            self._sink(event)

    def hangup(self) -> None:
        """CANCEL while ringing, BYE once connected."""
        from sippy.CCEvents import CCEventDisconnect

        self._then = None
        if not self.ua.isDead():
            self.ua.recvEvent(CCEventDisconnect())

    def _on_update(self, body: str | None) -> str | None:
        if body is None:
            return None  # a session refresh without an offer: nothing changes
        self._report(UacEvent("update", sdp=body))
        return self._offer

    def _event(self, event: Any, _ua: Any) -> None:
        from sippy.CCEvents import (
            CCEventConnect,
            CCEventDisconnect,
            CCEventFail,
            CCEventRing,
            CCEventUpdate,
        )
        from sippy.MsgBody import MsgBody

        try:
            data = event.getData()
            if isinstance(event, CCEventRing | CCEventConnect | CCEventFail):
                code, reason = int(data[0]), str(data[1])
                body = data[2] if len(data) > 2 else None
                kind = {CCEventRing: "ring", CCEventConnect: "connect", CCEventFail: "fail"}
                sdp, dialog, then, sent_in = _text(body), None, None, None
                if isinstance(event, CCEventConnect):
                    dialog = dialog_of(self.ua)
                    then = self._follow(sdp)
                    if then is not None:
                        sent_in = then._start_at(event.rtime)
                report = UacEvent(kind[type(event)], code, reason, sdp, dialog, then, sent_in)
                self._report(report)
                if then is not None:
                    then._release()
            elif isinstance(event, CCEventDisconnect):
                self._report(UacEvent("bye"))
            elif isinstance(event, CCEventUpdate):
                # A re-INVITE: keep the call, answer with our unchanged media.
                self.ua.recvEvent(CCEventConnect((200, "OK", MsgBody(self._offer))))
                self._report(UacEvent("update", sdp=_text(data)))
        except Exception:
            log.exception("SIP event handling failed")

    def _follow(self, answer: str | None) -> Uac | None:
        """The leg that follows this one's answer, built but not started, its reports
        held (at most once)."""
        build, self._then = self._then, None
        if build is None:
            return None
        try:
            follower = build(answer)
        except Exception:
            # The engine dials it the usual way when it hears of the answer.
            log.exception("cannot build the next leg at the answer")
            return None
        if follower is not None:
            follower._held = []
        return follower

    def _start_at(self, answered: Any) -> float | None:
        """Start this leg at the answer before it (``answered``: sippy's receipt time of
        that 200 OK); the seconds from that receipt to this INVITE, None if it failed
        (then reported as a failed leg, with no code: nothing reached the trunk)."""
        try:
            self.start()
        except Exception:
            log.exception("cannot send the INVITE of the leg after the answer")
            with contextlib.suppress(Exception):
                self.hangup()
            self._report(UacEvent("fail"))
            return None
        if answered is None:
            return None
        from sippy.Time.MonoTime import MonoTime

        # sippy's own clock (CLOCK_MONOTONIC_RAW on Linux), not time.monotonic()'s.
        sent: float = MonoTime() - answered
        return sent

    def _dead(self, _ua: Any) -> None:
        self._then = None
        self._report(UacEvent("dead"))


class InboundCall:
    """A call to a pool number: reports its offer, is answered with our SDP, hears the
    announcement (played by the relay) and is ended with our BYE."""

    def __init__(self, endpoint: SipEndpoint, req: Any, transaction: Any, report: Report) -> None:
        self._report = report
        self.ua: Any = _ua_class()(
            endpoint.config,
            event_cb=self._event,
            conn_cbs=(self._acked,),
            dead_cbs=(self._dead,),
        )
        self.ua.local_ua = USER_AGENT
        self.ua.lContact = _contact()
        self.ua.from_trunk = endpoint.from_trunk
        self.answer: str | None = None
        self.ua.on_update = lambda _body: self.answer
        self.result = self.ua.recvRequest(req, transaction)

    def accept(self, answer: str) -> None:
        from sippy.CCEvents import CCEventConnect
        from sippy.MsgBody import MsgBody

        self.answer = answer
        if not self.ua.isDead():
            self.ua.recvEvent(CCEventConnect((200, "OK", MsgBody(answer))))

    def refuse(self, code: int, reason: str, *, retry_after: int | None = None) -> None:
        from sippy.CCEvents import CCEventFail
        from sippy.SipHeader import SipHeader

        if not self.ua.isDead():
            event = CCEventFail((code, reason))
            if retry_after is not None:
                event.extra_headers = (SipHeader(name="retry-after", bodys=str(retry_after)),)
            self.ua.recvEvent(event)

    def hangup(self) -> None:
        from sippy.CCEvents import CCEventDisconnect

        if not self.ua.isDead():
            self.ua.recvEvent(CCEventDisconnect())

    def _event(self, event: Any, _ua: Any) -> None:
        from sippy.CCEvents import CCEventDisconnect, CCEventTry, CCEventUpdate

        try:
            if isinstance(event, CCEventTry):
                self._report(UacEvent("offer", sdp=_text(event.getData()[3])))
            elif isinstance(event, CCEventDisconnect):
                self._report(UacEvent("bye"))
            elif isinstance(event, CCEventUpdate) and self.answer is not None:
                self.accept(self.answer)  # a re-INVITE: the same answer again
        except Exception:
            log.exception("SIP event handling failed")

    def _acked(self, *_args: Any) -> None:
        self._report(UacEvent("acked"))

    def _dead(self, _ua: Any) -> None:
        self._report(UacEvent("dead"))


def send_bye(
    endpoint: SipEndpoint,
    dialog: Dialog,
    *,
    credentials: tuple[str | None, str | None],
    done: Callable[[int | None], None],
) -> None:
    """BYE in ``dialog`` (a client transaction, with sippy's retransmissions); ``done``
    gets the final response code (None when nothing answered). A 401/407 is answered
    once with the trunk's credentials."""
    from sippy.SipCallId import SipCallId
    from sippy.SipFrom import SipFrom
    from sippy.SipHeader import SipHeader
    from sippy.SipRequest import SipRequest
    from sippy.SipRoute import SipRoute
    from sippy.SipTo import SipTo
    from sippy.SipURL import SipURL

    def parsed(header: Any) -> Any:
        header.parse()
        return header

    def request(cseq: int) -> Any:
        return SipRequest(
            method="BYE",
            ruri=SipURL(url=dialog.remote_target),
            to=parsed(SipTo(body=dialog.remote)),
            fr0m=parsed(SipFrom(body=dialog.local)),
            cseq=cseq,
            callid=parsed(SipCallId(body=dialog.call_id)),
            routes=[parsed(SipRoute(body=route)) for route in dialog.route_set],
            target=(dialog.next_hop, "udp"),
            user_agent=USER_AGENT,
        )

    tm = endpoint.config["_sip_tm"]
    username, password = credentials
    tried_auth = False

    def on_response(resp: Any) -> None:
        nonlocal tried_auth
        code = int(resp.getSCode()[0])
        if code < 200:
            return
        header = {401: "www-authenticate", 407: "proxy-authenticate"}.get(code)
        if header and username and password and not tried_auth and resp.countHFs(header):
            tried_auth = True
            challenge = resp.getHFBody(header)
            retry = request(dialog.cseq + 1)
            auth = challenge.genAuthHF(username, password, "BYE", dialog.remote_target)
            retry.appendHeader(SipHeader(body=auth))
            tm.newTransaction(retry, on_response)
            return
        done(code)

    tm.newTransaction(request(dialog.cseq), on_response)
