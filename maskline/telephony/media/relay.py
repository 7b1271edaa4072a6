"""The RTP relay between a call's two legs (ARCHITECTURE §5), on the engine's loop.

Each leg gets an even local port for RTP and the odd one above it for RTCP,
from ``MASKLINE_RTP_PORTS``. Symmetric RTP: we send to the address the leg's
SDP named until its first packet arrives, then latch to that packet's source
and ignore every other source (no injection from elsewhere). Each leg hears one
continuous stream (``stream.OutboundStream``): our tones and the other leg's
packets are rewritten onto its SSRC, sequence numbers and timestamps; payloads
are relayed as they are, so telephone-events pass through. We terminate RTCP:
each leg gets sender reports about its own stream, every ``rtcp_interval``
seconds (randomised by half either way, RFC 3550 6.2). Audio (PCMU/PCMA) is
also decoded and handed to the recorder, placed by RTP timestamp so that a
lost or suppressed stretch becomes silence and the two channels stay in step.

``MediaSession`` is the interface the SIP carrier uses; an external media
server (rtpengine over its control protocol) can implement it instead.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
import secrets
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from maskline.telephony.carrier import MediaSink
from maskline.telephony.events import Leg
from maskline.telephony.media.g711 import G711, to_pcm16
from maskline.telephony.media.stream import FRAME_SAMPLES, SAMPLE_RATE, OutboundStream, payload_span

log = logging.getLogger("maskline.media")

RTP_HEADER = 12
# A timestamp jump further than this (a new stream, a broken sender) re-anchors
# the leg on the wall clock instead of filling minutes of silence.
MAX_GAP_SAMPLES = 10 * SAMPLE_RATE


class RelayFull(Exception):
    """No free RTP port pair is left in the configured range."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


class MediaSession(Protocol):
    def local(self, leg: Leg) -> Endpoint:
        """Where ``leg`` must send its RTP (goes into the SDP we give that leg)."""
        ...

    def set_remote(self, leg: Leg, remote: Endpoint, codec: G711) -> None:
        """The leg's own RTP address and codec, from its SDP."""
        ...

    def forward(self, source: Leg) -> None:
        """Start relaying ``source``'s packets to the other leg (early media, bridge)."""
        ...

    def record(self, sink: MediaSink) -> None:
        """From now on, hand both legs' audio to ``sink``."""
        ...

    def play(self, leg: Leg, payload: bytes, *, repeat: bool) -> asyncio.Task[None]:
        """Send ``payload`` (in the leg's codec) to ``leg`` until it ends or the other
        leg's media is relayed to it; returns the task playing it."""
        ...

    def idle_seconds(self, leg: Leg) -> float:
        """Seconds since ``leg``'s last packet (or since it was set up)."""
        ...

    async def close(self) -> None: ...


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, session: RelaySession, leg: Leg, *, rtcp: bool) -> None:
        # None once the socket is closed: the session holds its transports, which hold
        # this protocol, and a reference back would make each ended call a cycle for the
        # garbage collector instead of memory freed at once.
        self._session: RelaySession | None = session
        self._leg = leg
        self._rtcp = rtcp
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        session = self._session
        if session is None:
            return
        source = (str(addr[0]), int(addr[1]))
        if self._rtcp:
            session._on_rtcp(self._leg, data, source)
        else:
            session._on_rtp(self._leg, data, source)

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" from a far end that went away: the media
        # timeout, not an exception, is what ends such a call.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._session = None
        if not self.lost.done():
            self.lost.set_result(None)


Made = tuple[asyncio.DatagramTransport, _Socket]


class _LegMedia:
    def __init__(
        self,
        port: int,
        sockets: tuple[tuple[asyncio.DatagramTransport, _Socket], ...],
        *,
        stream: OutboundStream,
    ) -> None:
        (self.rtp, rtp_socket), (self.rtcp, rtcp_socket) = sockets
        self.port = port
        self.stream = stream  # everything this leg hears
        self.closed = asyncio.gather(rtp_socket.lost, rtcp_socket.lost)
        self.remote: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        self.sdp_host: str | None = None
        self.sdp_address: tuple[str, int] | None = None
        self.latched = False
        self.left: tuple[str, int] | None = None  # latched before the SDP moved
        self.codec: G711 | None = None
        self.last_rx = time.monotonic()
        self.forwarding = False
        # Recorder placement: sample position = anchor + (timestamp - ts_origin).
        self.ts_origin: int | None = None
        self.anchor = 0
        self.written = 0
        self.packets_in = 0
        self.packets_out = 0


class RelaySession:
    def __init__(self, relay: UdpRelay, call_sid: str, legs: dict[Leg, _LegMedia]) -> None:
        self._relay = relay
        self.call_sid = call_sid
        self._legs = legs
        self._sink: MediaSink | None = None
        self._recording_since: float | None = None
        self._closed = False
        self._players: dict[Leg, asyncio.Task[None]] = {}
        self._tones = itertools.count()
        self._reports: asyncio.Task[None] | None = None
        # The first close() in progress: a later one (the relay's own, at shutdown) waits
        # for it, so that no caller is told the ports are free while they are still bound.
        self._closing: asyncio.Future[None] | None = None

    def start_reports(self, interval: float) -> None:
        """Send each leg a sender report about its stream every ``interval`` seconds
        (each wait drawn from half to one and a half of it, RFC 3550 6.2)."""
        self._reports = asyncio.create_task(self._report_loop(interval))

    async def _report_loop(self, interval: float) -> None:
        while not self._closed:
            await asyncio.sleep(interval * random.uniform(0.5, 1.5))
            for media in self._legs.values():
                report = media.stream.sender_report(now=time.monotonic(), wall=time.time())
                if report is not None and media.remote_rtcp is not None:
                    media.rtcp.sendto(report, media.remote_rtcp)

    def local(self, leg: Leg) -> Endpoint:
        return Endpoint(self._relay.advertise, self._legs[leg].port)

    def set_remote(self, leg: Leg, remote: Endpoint, codec: G711) -> None:
        """The leg's SDP: from now on its packets are accepted, from that host only.

        A new address or port (a re-INVITE or UPDATE moving the media) starts latching
        afresh, and the source latched before is not accepted again unless the new SDP
        names it; the same address again (a hold, a session refresh) keeps the latch.
        """
        media = self._legs[leg]
        media.codec = codec
        media.last_rx = time.monotonic()
        address = (remote.host, remote.port)
        if media.sdp_address != address or not media.latched:
            if media.latched:
                # The source it sent from until now (its last packets may still be on
                # the way) must not win the new latch.
                media.left = media.remote
            media.sdp_host = remote.host
            media.sdp_address = address
            media.latched = False
            media.remote = address
            media.remote_rtcp = (remote.host, remote.port + 1)

    def forward(self, source: Leg) -> None:
        media = self._legs[source]
        media.forwarding = True
        media.last_rx = time.monotonic()  # its silence counts from now, not from its dial
        self._stop_playing(source.other)

    def play(self, leg: Leg, payload: bytes, *, repeat: bool) -> asyncio.Task[None]:
        self._stop_playing(leg)
        other = self._legs.get(leg.other)
        if other is not None:
            other.forwarding = False  # the tone has the leg's stream to itself
        task = asyncio.create_task(self._play(leg, payload, repeat=repeat))
        self._players[leg] = task
        return task

    def _stop_playing(self, leg: Leg) -> None:
        player = self._players.pop(leg, None)
        if player is not None:
            player.cancel()

    async def _play(self, leg: Leg, payload: bytes, *, repeat: bool) -> None:
        """Our own RTP stream to ``leg``: 20 ms packets, paced on the loop's clock."""
        media = self._legs[leg]
        if media.codec is None or not payload:
            return
        loop = asyncio.get_running_loop()
        source = ("tone", next(self._tones))
        start = loop.time()
        sent = 0
        while not self._closed:
            offset = (sent * FRAME_SAMPLES) % len(payload) if repeat else sent * FRAME_SAMPLES
            if offset >= len(payload):
                return
            chunk = payload[offset : offset + FRAME_SAMPLES]
            if media.remote is not None:
                # The tone's own numbering; the leg's stream maps it onto its own.
                header = struct.pack(
                    "!BBHII",
                    0x80,
                    media.codec.value,
                    sent & 0xFFFF,
                    (sent * FRAME_SAMPLES) & 0xFFFFFFFF,
                    0,
                )
                packet = media.stream.rewrite(source, header + chunk, now=time.monotonic())
                if packet is not None:
                    media.rtp.sendto(packet, media.remote)
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * FRAME_SAMPLES / SAMPLE_RATE - loop.time()))

    def record(self, sink: MediaSink) -> None:
        self._sink = sink
        self._recording_since = None

    def idle_seconds(self, leg: Leg) -> float:
        return time.monotonic() - self._legs[leg].last_rx

    def counters(self, leg: Leg) -> tuple[int, int]:
        """Packets received from ``leg`` and relayed to it."""
        media = self._legs[leg]
        return media.packets_in, media.packets_out

    async def close(self) -> None:
        """Stop relaying and recording; the ports are free again once this returns
        (whichever call of it came first does the closing; the others wait for it)."""
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._closing = asyncio.get_running_loop().create_future()
        try:
            await self._close()
        finally:
            self._closing.set_result(None)

    async def _close(self) -> None:
        # Everything closed before the first wait: a closer cancelled in a wait (its task
        # abandoned at a shutdown) leaves no socket open for the garbage collector.
        self._closed = True
        for leg in list(self._players):
            self._stop_playing(leg)
        if self._reports is not None:
            self._reports.cancel()
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        for media in self._legs.values():
            media.rtp.close()
            media.rtcp.close()
        try:
            if self._reports is not None:
                await asyncio.wait([self._reports])
                # The cancelled task's error holds its frame, which holds this session:
                # kept here, it would make the session a cycle (see ``_Socket``).
                self._reports = None
            await asyncio.gather(*(m.closed for m in self._legs.values()))
        finally:
            self._relay._release(self)

    # -- packets ----------------------------------------------------------------

    def _latch(self, media: _LegMedia, source: tuple[str, int]) -> bool:
        """Accept ``source`` for this leg: nothing before its SDP, then the first port the
        SDP's host sends from (symmetric RTP), and nobody else."""
        if media.sdp_host is None or source[0] != media.sdp_host:
            return False
        if not media.latched:
            if source == media.left and source != media.sdp_address:
                return False  # the old stream, still arriving after the media moved
            media.latched = True
            media.remote = source
            media.remote_rtcp = (source[0], source[1] + 1)
            return True
        return media.remote == source

    def _on_rtp(self, leg: Leg, data: bytes, source: tuple[str, int]) -> None:
        # None while the session is still binding this leg's pair: a stream still
        # arriving at these ports (from an earlier call's far end, or anyone sending
        # there) reaches its RTP socket before the RTCP one is bound. Dropped, as
        # anything before the leg's SDP.
        media = self._legs.get(leg)
        if media is None:
            return
        if len(data) < RTP_HEADER or data[0] >> 6 != 2 or not self._latch(media, source):
            return
        media.last_rx = now = time.monotonic()
        media.packets_in += 1
        other = self._legs.get(leg.other)
        if media.forwarding and other is not None and other.remote is not None:
            packet = other.stream.rewrite(leg, data, now=now)
            if packet is not None:
                other.rtp.sendto(packet, other.remote)
                other.packets_out += 1
        if self._sink is not None:
            self._tee(leg, media, data)

    def _on_rtcp(self, leg: Leg, data: bytes, source: tuple[str, int]) -> None:
        """A leg's reports end here (they describe streams the other leg never sees);
        they tell us where the leg takes its own reports."""
        media = self._legs.get(leg)  # None while still binding (``_on_rtp``)
        if media is None:
            return
        if media.sdp_host is None or source[0] != media.sdp_host:
            return
        media.remote_rtcp = source

    def _tee(self, leg: Leg, media: _LegMedia, data: bytes) -> None:
        assert self._sink is not None
        payload_type = data[1] & 0x7F
        if media.codec is None or payload_type != media.codec.value:
            return  # telephone-events, comfort noise: relayed, not recorded
        span = payload_span(data)
        if span is None or span[0] == span[1]:
            return
        payload = data[span[0] : span[1]]
        (timestamp,) = struct.unpack_from("!I", data, 4)
        arrived = time.monotonic()
        if self._recording_since is None:
            self._recording_since = arrived  # the first audio of either leg is sample 0
        # Where the wall clock puts this packet, to the nearest 20 ms frame.
        elapsed = (arrived - self._recording_since) * SAMPLE_RATE
        now_samples = round(elapsed / FRAME_SAMPLES) * FRAME_SAMPLES
        if media.ts_origin is None:
            media.ts_origin, media.anchor = timestamp, now_samples
        position = media.anchor + ((timestamp - media.ts_origin) & 0xFFFFFFFF)
        if abs(position - now_samples) > MAX_GAP_SAMPLES:
            media.ts_origin, media.anchor, position = timestamp, now_samples, now_samples
        if position < media.written:
            payload = payload[media.written - position :]  # late or duplicate audio
            position = media.written
            if not payload:
                return
        if position > media.written:
            self._sink.on_audio(leg, bytes(2 * (position - media.written)))
        self._sink.on_audio(leg, to_pcm16(media.codec, payload))
        media.written = position + len(payload)


class UdpRelay:
    """Allocates port pairs and runs each call's ``RelaySession`` on this event loop."""

    def __init__(
        self, *, bind_host: str, advertise: str, ports: range, rtcp_interval: float = 5.0
    ) -> None:
        """``ports``: the even RTP ports to use, each with RTCP on the odd port above
        (``Settings.rtp_ports.even_ports``)."""
        self.bind_host = bind_host
        self.advertise = advertise
        self.rtcp_interval = rtcp_interval
        self._ports = ports
        self._in_use: set[int] = set()
        # Start somewhere unpredictable, so a call's ports cannot be guessed from the last.
        self._next = secrets.randbelow(len(self._ports))
        self.sessions: dict[str, RelaySession] = {}
        self._making: set[asyncio.Future[Made]] = set()

    async def open(
        self, call_sid: str, legs_wanted: tuple[Leg, ...] = (Leg.A, Leg.B)
    ) -> RelaySession:
        """A session with a port pair for each of ``legs_wanted`` (both, for a bridged
        call; A alone for a call that only hears our own audio)."""
        loop = asyncio.get_running_loop()
        legs: dict[Leg, _LegMedia] = {}
        session = RelaySession(self, call_sid, legs)
        try:
            for leg in legs_wanted:
                legs[leg] = await self._bind_pair(loop, session, leg)
        except BaseException:
            for media in legs.values():
                media.rtp.close()
                media.rtcp.close()
                self._in_use.discard(media.port)
            raise
        self.sessions[call_sid] = session
        session.start_reports(self.rtcp_interval)
        return session

    async def _bind_pair(
        self, loop: asyncio.AbstractEventLoop, session: RelaySession, leg: Leg
    ) -> _LegMedia:
        for _ in range(len(self._ports)):
            port = self._ports[self._next]
            self._next = (self._next + 1) % len(self._ports)
            if port in self._in_use:
                continue
            try:
                rtp = await self._endpoint(
                    loop, lambda: _Socket(session, leg, rtcp=False), (self.bind_host, port)
                )
            except OSError:
                continue
            try:
                rtcp = await self._endpoint(
                    loop, lambda: _Socket(session, leg, rtcp=True), (self.bind_host, port + 1)
                )
            except OSError:
                rtp[0].close()
                continue
            except BaseException:
                # Cancelled (the call ended meanwhile): the RTP socket is not left open.
                rtp[0].close()
                raise
            self._in_use.add(port)
            return _LegMedia(
                port, (rtp, rtcp), stream=OutboundStream(cname=f"maskline@{self.advertise}")
            )
        raise RelayFull(f"no free RTP port pair in {self._ports.start}-{self._ports.stop}")

    async def _endpoint(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: Callable[[], _Socket],
        address: tuple[str, int],
    ) -> Made:
        """A UDP socket bound to ``address`` (OSError if it is taken), never left open.

        Bound here, at once, not by uvloop: its own bind made a transport first and,
        when the port was taken, dropped it unclosed; and a port it was still binding
        was not yet taken for the next open. The endpoint is then made in a task of its
        own, kept until done, and closed once made if the open was cancelled meanwhile
        (uvloop's transport holds the socket before its first await).
        """
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
        making = asyncio.ensure_future(loop.create_datagram_endpoint(protocol, sock=sock))
        self._making.add(making)
        making.add_done_callback(self._making.discard)
        try:
            return await asyncio.shield(making)
        except asyncio.CancelledError:
            making.add_done_callback(functools.partial(_close_made, sock))
            raise
        except BaseException:
            sock.close()
            raise

    def _release(self, session: RelaySession) -> None:
        for media in session._legs.values():
            self._in_use.discard(media.port)
        self.sessions.pop(session.call_sid, None)

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            await session.close()


def _close_made(sock: socket.socket, making: asyncio.Future[Made]) -> None:
    if not making.cancelled() and making.exception() is None:
        making.result()[0].close()
    else:
        sock.close()
