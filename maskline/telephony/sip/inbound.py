"""INVITEs from outside (SPEC §8): a party calling a masked number back.

Until inbound masking is built, a call to a pool number is answered, hears a short
announcement (the ITU-T special information tone, ``tones.announcement``), and is
ended with our BYE; a call to any other number is refused with 480 as before.
Only the trunk's INVITEs get here (the carrier answers any other source 403), and at
most ``MAX_ANNOUNCEMENTS`` play at once: beyond that a call to a pool number is
answered 503 with Retry-After. Every INVITE for a pool number that gets here is
counted, whatever its answer (200, 488, 503).

The SIP stack never waits for the engine: it hands every new INVITE to a sippy
UAS (which sends 100 Trying) and reports the dialled number to the engine's loop.
The loop asks ``is_pool_number``, which the engine side gives the carrier: telephony
knows its protocol, not the pool or its database.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from maskline.telephony.events import Leg
from maskline.telephony.media import tones
from maskline.telephony.media.relay import RelayFull, UdpRelay
from maskline.telephony.sip import sdp
from maskline.telephony.sip.agents import InboundCall
from maskline.telephony.sip.stack import SipEndpoint, SipLoop, UacEvent

log = logging.getLogger("maskline.sip")

# Whether a 12-digit number (SPEC §2) is one of the pool's masked numbers.
IsPoolNumber = Callable[[str], Awaitable[bool]]

ACK_WAIT_SEC = 32.0  # RFC 3261 timer H: how long a 200 OK waits for its ACK
# Announcements playing at once (each holds an RTP port pair for up to ACK_WAIT_SEC
# plus the tone), so calls to pool numbers can never starve the outbound legs of ports.
MAX_ANNOUNCEMENTS = 20
RETRY_AFTER_SEC = 10
CLOSE_WAIT_SEC = 5.0


def masked_form(user: str | None) -> str | None:
    """The 12-digit masked number (SPEC §2) a Request-URI user names, if it names one:
    ``+917969002802``, ``917969002802``, ``07969002802``, ``7969002802``."""
    if not user:
        return None
    digits = user.split(";", 1)[0].replace("-", "").removeprefix("+")
    if not (digits.isascii() and digits.isdigit()):
        return None
    if len(digits) == 14 and digits.startswith("0091"):
        digits = digits[2:]
    elif len(digits) == 11 and digits.startswith("0"):
        digits = "91" + digits[1:]
    elif len(digits) == 10:
        digits = "91" + digits
    return digits if len(digits) == 12 and digits.startswith("91") else None


@dataclass
class _Caller:
    """Loop-side state of one inbound call."""

    acked: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class PoolLine:
    """Answers calls to pool numbers with the announcement, on the engine's loop."""

    def __init__(
        self,
        *,
        sip: SipLoop,
        relay: UdpRelay,
        is_pool_number: IsPoolNumber,
        counted: Callable[[], None],
    ) -> None:
        self._sip = sip
        self._relay = relay
        self._is_pool_number = is_pool_number
        self._counted = counted
        self._callers: dict[str, _Caller] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # every _handle, until it returns
        self._announcing = 0  # announcements holding an RTP port pair
        self._closing = False
        self._agents: dict[str, InboundCall] = {}  # touched by the SIP stack only
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Refuse new calls (503), end the ones here, and return only once every task
        of ours has finished: those still running after ``CLOSE_WAIT_SEC`` are cancelled
        and awaited, so none outlives the carrier (or what ``is_pool_number`` reads)."""
        self._closing = True
        for key, caller in list(self._callers.items()):
            self._sip.call(self._hangup, key)
            caller.gone.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_WAIT_SEC
        # No handler starts once closing.
        while pending := self._pending():
            left = deadline - loop.time()
            if left > 0:
                await asyncio.wait(pending, timeout=left)
                continue
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _pending(self) -> set[asyncio.Task[None]]:
        return {task for task in self._tasks if not task.done()}

    # -- the SIP stack ----------------------------------------------------------

    def take(self, endpoint: SipEndpoint, req: Any, transaction: Any) -> Any:
        """A new INVITE from outside: a UAS for it, the decision left to the loop."""
        key = f"in-{secrets.token_hex(8)}"
        loop = self._loop
        assert loop is not None
        number = masked_form(req.getRURI().username)

        def report(event: UacEvent) -> None:
            if event.kind == "dead":
                self._agents.pop(key, None)
            loop.call_soon(self._on_event, key, number, event)

        agent = InboundCall(endpoint, req, transaction, report)
        self._agents[key] = agent
        return agent.result

    def _accept(self, key: str, answer: str) -> None:
        agent = self._agents.get(key)
        if agent is not None:
            agent.accept(answer)

    def _refuse(self, key: str, code: int, reason: str, retry_after: int | None = None) -> None:
        agent = self._agents.get(key)
        if agent is not None:
            agent.refuse(code, reason, retry_after=retry_after)

    def _hangup(self, key: str) -> None:
        agent = self._agents.get(key)
        if agent is not None:
            agent.hangup()

    # -- the engine's loop ------------------------------------------------------

    def _on_event(self, key: str, number: str | None, event: UacEvent) -> None:
        if event.kind == "offer":
            if self._closing:
                self._sip.call(self._refuse, key, 503, "Service Unavailable")
                return
            new = _Caller()
            self._callers[key] = new
            task = asyncio.create_task(self._handle(key, number, event.sdp, new))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        caller = self._callers.get(key)
        if caller is None:
            return
        if event.kind == "acked":
            caller.acked.set()
        elif event.kind in ("bye", "dead"):
            caller.gone.set()

    async def _handle(
        self, key: str, number: str | None, offer: str | None, caller: _Caller
    ) -> None:
        try:
            if number is None or not await self._is_pool_number(number):
                self._sip.call(self._refuse, key, 480, "Temporarily Unavailable")
                return
            if self._closing:  # close() began while we looked: it is hanging this up
                return
            self._counted()
            await self._announce(key, offer, caller)
        except Exception:
            log.exception("inbound call handling failed")
            self._sip.call(self._refuse, key, 500, "Server Internal Error")
        finally:
            self._callers.pop(key, None)

    async def _announce(self, key: str, offer: str | None, caller: _Caller) -> None:
        remote = sdp.parse(offer) if offer else None
        if remote is None or remote.codec is None:
            # No G.711 offered (or no offer at all: late-offer INVITEs are not supported).
            self._sip.call(self._refuse, key, 488, "Not Acceptable Here")
            return
        if self._announcing >= MAX_ANNOUNCEMENTS:
            log.warning("%d calls to pool numbers already playing: 503", self._announcing)
            self._sip.call(self._refuse, key, 503, "Service Unavailable", RETRY_AFTER_SEC)
            return
        self._announcing += 1
        try:
            await self._play_announcement(key, remote, caller)
        finally:
            self._announcing -= 1

    async def _play_announcement(self, key: str, remote: sdp.RemoteMedia, caller: _Caller) -> None:
        assert remote.codec is not None
        try:
            # One port pair: the caller only hears us, there is no other leg.
            session = await self._relay.open(key, (Leg.A,))
        except RelayFull:
            log.error("no RTP ports left: refusing a call to a pool number")
            self._sip.call(self._refuse, key, 503, "Service Unavailable", RETRY_AFTER_SEC)
            return
        try:
            session.set_remote(Leg.A, remote.endpoint, remote.codec)
            answer = sdp.offer(session.local(Leg.A), (remote.codec,))
            self._sip.call(self._accept, key, answer)
            if await _first(caller.acked, caller.gone, within=ACK_WAIT_SEC) is caller.acked:
                playing = session.play(Leg.A, tones.announcement(remote.codec), repeat=False)
                gone = asyncio.ensure_future(caller.gone.wait())
                try:
                    await asyncio.wait({playing, gone}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    gone.cancel()
            self._sip.call(self._hangup, key)
        finally:
            await session.close()


async def _first(*events: asyncio.Event, within: float) -> asyncio.Event | None:
    """The first of ``events`` to be set within ``within`` seconds, or None."""
    waits = {asyncio.ensure_future(e.wait()): e for e in events}
    try:
        done, _ = await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    for wait, event in waits.items():
        if wait in done:
            return event
    return None
