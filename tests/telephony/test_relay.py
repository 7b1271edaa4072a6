"""The RTP relay, spoken to over loopback UDP by two fake phones (and an intruder)."""

from __future__ import annotations

import asyncio
import gc
import itertools
import socket
import struct
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from maskline.telephony.events import Leg
from maskline.telephony.media import tones
from maskline.telephony.media.g711 import G711, to_pcm16
from maskline.telephony.media.relay import Endpoint, RelayFull, UdpRelay
from maskline.telephony.sim.audio import TONE_HZ, tone_frames
from tests.support.audio import dominant_hz
from tests.support.rtp import Capture, Phone, pcmu

PTIME_SAMPLES = 160


def rtp(seq: int, payload: bytes, *, payload_type: int = 0, ssrc: int = 0x1234) -> bytes:
    timestamp = 1000 + seq * PTIME_SAMPLES
    return struct.pack("!BBHII", 0x80, payload_type, seq & 0xFFFF, timestamp, ssrc) + payload


def header(packet: bytes) -> tuple[int, int, int, bool]:
    """(SSRC, sequence number, timestamp, marker) of an RTP packet."""
    seq, timestamp, ssrc = struct.unpack_from("!HII", packet, 2)
    return ssrc, seq, timestamp, bool(packet[1] & 0x80)


def steps(packets: list[bytes]) -> list[tuple[int, int]]:
    """Each packet's (sequence, timestamp) step from the one before, modulo their widths."""
    heads = [header(p) for p in packets]
    return [
        ((b[1] - a[1]) & 0xFFFF, (b[2] - a[2]) & 0xFFFFFFFF) for a, b in itertools.pairwise(heads)
    ]


def tone_packets(hz: int, count: int) -> Iterator[tuple[int, bytes]]:
    encoded = pcmu(tone_frames(hz, 0, count))
    for seq in range(count):
        yield seq, encoded[seq * PTIME_SAMPLES : (seq + 1) * PTIME_SAMPLES]


@pytest.fixture
async def relay() -> AsyncIterator[UdpRelay]:
    relay = UdpRelay(bind_host="127.0.0.1", advertise="127.0.0.1", ports=range(26000, 26099, 2))
    yield relay
    await relay.close()


async def test_packets_are_relayed_both_ways_with_their_payloads(
    relay: UdpRelay, phones: dict[Leg, Phone]
) -> None:
    session = await relay.open("call-1")
    a, b = session.local(Leg.A), session.local(Leg.B)
    assert (a.host, a.port % 2, b.port % 2, a.port != b.port) == ("127.0.0.1", 0, 0, True)
    for leg, phone in phones.items():
        session.set_remote(leg, Endpoint("127.0.0.1", phone.port), G711.PCMU)
        session.forward(leg)
    sent_a = [rtp(seq, bytes([seq]) * 160) for seq in range(20)]
    sent_b = [rtp(seq, bytes([200 - seq]) * 160, ssrc=99) for seq in range(20)]
    for packet_a, packet_b in zip(sent_a, sent_b, strict=True):
        phones[Leg.A].send(packet_a, a)
        phones[Leg.B].send(packet_b, b)
    heard_b, heard_a = await phones[Leg.B].receive(20), await phones[Leg.A].receive(20)
    # Payload and payload type as sent; the headers are each leg's own stream's.
    assert [(p[1] & 0x7F, p[12:]) for p in heard_b] == [(0, p[12:]) for p in sent_a]
    assert [(p[1] & 0x7F, p[12:]) for p in heard_a] == [(0, p[12:]) for p in sent_b]
    assert steps(heard_b) == steps(heard_a) == [(1, PTIME_SAMPLES)] * 19
    assert session.counters(Leg.A) == (20, 20)
    assert session.counters(Leg.B) == (20, 20)
    await session.close()


async def test_only_the_latched_source_is_relayed(
    relay: UdpRelay, phones: dict[Leg, Phone]
) -> None:
    session = await relay.open("call-2")
    for leg, phone in phones.items():
        session.set_remote(leg, Endpoint("127.0.0.1", phone.port), G711.PCMU)
        session.forward(leg)
    phones[Leg.A].send(rtp(1, b"\xff" * 160), session.local(Leg.A))
    assert len(await phones[Leg.B].receive(1)) == 1
    intruder = Phone()
    try:
        intruder.send(rtp(2, b"\x00" * 160), session.local(Leg.A))
        assert await phones[Leg.B].nothing_within(0.3)
    finally:
        intruder.close()
    assert session.counters(Leg.A) == (1, 0)
    await session.close()


async def test_nothing_is_relayed_before_forwarding_starts(
    relay: UdpRelay, phones: dict[Leg, Phone]
) -> None:
    session = await relay.open("call-3")
    for leg, phone in phones.items():
        session.set_remote(leg, Endpoint("127.0.0.1", phone.port), G711.PCMU)
    phones[Leg.A].send(rtp(1, b"\xff" * 160), session.local(Leg.A))
    assert await phones[Leg.B].nothing_within(0.3)
    assert session.idle_seconds(Leg.A) < session.idle_seconds(Leg.B)
    await session.close()


async def test_the_recorder_gets_each_leg_decoded_with_losses_as_silence(
    relay: UdpRelay, phones: dict[Leg, Phone]
) -> None:
    session = await relay.open("call-5")
    capture = Capture()
    for leg, phone in phones.items():
        session.set_remote(leg, Endpoint("127.0.0.1", phone.port), G711.PCMU)
        session.forward(leg)
    session.record(capture)
    lost = {30, 31}
    for (seq, payload_a), (_, payload_b) in zip(
        tone_packets(TONE_HZ["party_a"], 100), tone_packets(TONE_HZ["party_b"], 100), strict=True
    ):
        if seq not in lost:
            phones[Leg.A].send(rtp(seq, payload_a), session.local(Leg.A))
        phones[Leg.B].send(rtp(seq, payload_b), session.local(Leg.B))
        # A DTMF event is relayed but not recorded.
        if seq == 50:
            dtmf = rtp(seq, b"\x01\x0a\x00\xa0", payload_type=101)
            phones[Leg.A].send(dtmf, session.local(Leg.A))
        await asyncio.sleep(0.001)  # pacing, not a wait: spread out like a phone's, not one burst
    await phones[Leg.B].receive(99)
    await phones[Leg.A].receive(100)
    await session.close()
    assert capture.closed
    a, b = bytes(capture.audio[Leg.A]), bytes(capture.audio[Leg.B])
    assert len(a) == len(b) == 100 * PTIME_SAMPLES * 2
    assert a[30 * 320 : 32 * 320] == bytes(2 * 320)
    assert a[:320] == to_pcm16(G711.PCMU, next(tone_packets(TONE_HZ["party_a"], 1))[1])
    assert dominant_hz(a[32 * 320 :]) == 440
    assert dominant_hz(b) == 1000


async def test_a_full_port_range_is_refused_and_ports_come_back() -> None:
    relay = UdpRelay(bind_host="127.0.0.1", advertise="127.0.0.1", ports=range(26200, 26203, 2))
    try:
        first = await relay.open("call-6")
        with pytest.raises(RelayFull):
            await relay.open("call-7")
        await first.close()
        again = await relay.open("call-8")
        assert {again.local(Leg.A).port, again.local(Leg.B).port} == {26200, 26202}
        await again.close()
    finally:
        await relay.close()


async def test_the_relay_closed_while_a_session_is_closing_returns_with_its_ports_unbound() -> None:
    # At shutdown the carrier's own close of a finished call may still be in its first
    # wait (its task then abandoned): the relay's close must not return, nor leave the
    # sockets to the garbage collector, before that session's ports are unbound.
    relay = UdpRelay(bind_host="127.0.0.1", advertise="127.0.0.1", ports=range(26500, 26503, 2))
    session = await relay.open("call-9")
    ports = [session.local(Leg.A).port, session.local(Leg.B).port]
    first = asyncio.create_task(session.close())
    await asyncio.sleep(0)  # the first close is now in its wait
    await relay.close()
    freed = []
    for port in ports:
        for offset in (0, 1):  # RTP, and RTCP on the odd port above
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind(("127.0.0.1", port + offset))
                freed.append(port + offset)
            except OSError:
                pass
            finally:
                probe.close()
    assert freed == [ports[0], ports[0] + 1, ports[1], ports[1] + 1]
    await first


async def test_nothing_is_accepted_before_the_legs_sdp_nor_from_another_host(
    relay: UdpRelay, phones: dict[Leg, Phone]
) -> None:
    session = await relay.open("call-9")
    session.set_remote(Leg.B, Endpoint("127.0.0.1", phones[Leg.B].port), G711.PCMU)
    session.forward(Leg.A)
    # A's packet before A's SDP is dropped, and does not latch A's port to its sender.
    phones[Leg.A].send(rtp(1, b"\x11" * 160), session.local(Leg.A))
    assert await phones[Leg.B].nothing_within(0.2)
    session.set_remote(Leg.A, Endpoint("127.0.0.1", phones[Leg.A].port), G711.PCMU)
    stranger = Phone(host="127.0.0.2")
    try:
        stranger.send(rtp(2, b"\x22" * 160), session.local(Leg.A))
        assert await phones[Leg.B].nothing_within(0.2)
        phones[Leg.A].send(rtp(3, b"\x33" * 160), session.local(Leg.A))
        assert [p[12:13] for p in await phones[Leg.B].receive(1)] == [b"\x33"]
        # A re-INVITE moves A's media to the other host: it is accepted from then on.
        session.set_remote(Leg.A, Endpoint("127.0.0.2", stranger.port), G711.PCMU)
        stranger.send(rtp(4, b"\x44" * 160), session.local(Leg.A))
        assert [p[12:13] for p in await phones[Leg.B].receive(1)] == [b"\x44"]
        phones[Leg.A].send(rtp(5, b"\x55" * 160), session.local(Leg.A))
        assert await phones[Leg.B].nothing_within(0.2)
    finally:
        stranger.close()
        await session.close()


async def test_an_sdp_moving_to_another_port_of_the_same_host_latches_afresh(
    relay: UdpRelay, phones: dict[Leg, Phone]
) -> None:
    session = await relay.open("call-10")
    for leg, phone in phones.items():
        session.set_remote(leg, Endpoint("127.0.0.1", phone.port), G711.PCMU)
        session.forward(leg)
    phones[Leg.A].send(rtp(1, b"\x11" * 160), session.local(Leg.A))
    assert [p[12:13] for p in await phones[Leg.B].receive(1)] == [b"\x11"]
    moved = Phone()
    try:
        # An UPDATE moves A's media to another port of the same host.
        session.set_remote(Leg.A, Endpoint("127.0.0.1", moved.port), G711.PCMU)
        phones[Leg.B].send(rtp(1, b"\x12" * 160), session.local(Leg.B))
        assert [p[12:13] for p in await moved.receive(1)] == [b"\x12"]
        # The old port's late packet does not win the new latch; the new port's does.
        phones[Leg.A].send(rtp(2, b"\x22" * 160), session.local(Leg.A))
        moved.send(rtp(3, b"\x33" * 160), session.local(Leg.A))
        assert [p[12:13] for p in await phones[Leg.B].receive(1)] == [b"\x33"]
        phones[Leg.A].send(rtp(4, b"\x44" * 160), session.local(Leg.A))
        assert await phones[Leg.B].nothing_within(0.2)
        # The same SDP again (a session refresh) keeps the latch.
        session.set_remote(Leg.A, Endpoint("127.0.0.1", moved.port), G711.PCMU)
        phones[Leg.A].send(rtp(5, b"\x55" * 160), session.local(Leg.A))
        moved.send(rtp(6, b"\x66" * 160), session.local(Leg.A))
        assert [p[12:13] for p in await phones[Leg.B].receive(1)] == [b"\x66"]
    finally:
        moved.close()
        await session.close()


async def test_a_session_for_one_leg_takes_one_port_pair(phones: dict[Leg, Phone]) -> None:
    relay = UdpRelay(bind_host="127.0.0.1", advertise="127.0.0.1", ports=range(26300, 26303, 2))
    try:
        first = await relay.open("one-1", (Leg.A,))
        second = await relay.open("one-2", (Leg.A,))
        with pytest.raises(RelayFull):
            await relay.open("one-3", (Leg.A,))
        assert {first.local(Leg.A).port, second.local(Leg.A).port} == {26300, 26302}
        # The caller's RTP is taken (there is no other leg to relay it to) and it hears us.
        first.set_remote(Leg.A, Endpoint("127.0.0.1", phones[Leg.A].port), G711.PCMU)
        phones[Leg.A].send(rtp(1, b"\xff" * 160), first.local(Leg.A))
        playing = first.play(Leg.A, b"\x7f" * 320, repeat=False)
        assert [p[12:13] for p in await phones[Leg.A].receive(2)] == [b"\x7f", b"\x7f"]
        await playing
        assert first.counters(Leg.A) == (1, 0)
    finally:
        await relay.close()


async def test_a_leg_hears_one_stream_across_ringback_the_other_party_and_the_busy_tone(
    relay: UdpRelay, phones: dict[Leg, Phone]
) -> None:
    session = await relay.open("call-11")
    for leg, phone in phones.items():
        session.set_remote(leg, Endpoint("127.0.0.1", phone.port), G711.PCMU)
    try:
        # Five packets of ringback, B's answer within milliseconds, then a busy tone.
        ringback = tones.ringback(G711.PCMU)[: 5 * PTIME_SAMPLES]
        await session.play(Leg.A, ringback, repeat=False)
        heard = await phones[Leg.A].receive(5)
        session.forward(Leg.B)
        # B's own stream: its SSRC, sequence numbers and timestamps, a talk spurt's
        # marker on its fourth packet.
        from_b = [
            struct.pack(
                "!BBHII",
                0x80,
                0x80 * (n == 3),
                (65530 + n) & 0xFFFF,
                (0xFFFFFF00 + n * PTIME_SAMPLES) & 0xFFFFFFFF,
                0xB0B0B0B0,
            )
            + bytes([0x40 + n]) * PTIME_SAMPLES
            for n in range(10)
        ]
        for packet in from_b:
            phones[Leg.B].send(packet, session.local(Leg.B))
        heard += await phones[Leg.A].receive(10)
        busy = tones.busy(G711.PCMU)[: 5 * PTIME_SAMPLES]
        await session.play(Leg.A, busy, repeat=False)
        heard += await phones[Leg.A].receive(5)
    finally:
        await session.close()
    heads = [header(p) for p in heard]
    assert len({ssrc for ssrc, *_ in heads}) == 1
    assert [p[12:] for p in heard] == [
        *(ringback[n : n + PTIME_SAMPLES] for n in range(0, len(ringback), PTIME_SAMPLES)),
        *(p[12:] for p in from_b),
        *(busy[n : n + PTIME_SAMPLES] for n in range(0, len(busy), PTIME_SAMPLES)),
    ]
    # Sequence numbers step by one across both switches; timestamps by one packet
    # time within each source, and by at least one at a switch.
    assert [seq for seq, _ in steps(heard)] == [1] * 19
    timestamps = [ts for _, ts in steps(heard)]
    assert timestamps[:4] + timestamps[5:14] + timestamps[15:] == [PTIME_SAMPLES] * 17
    assert PTIME_SAMPLES <= timestamps[4] < 0x80000000
    assert PTIME_SAMPLES <= timestamps[14] < 0x80000000
    # The marker at each switch (and B's own talk-spurt marker, kept).
    assert [n for n, (*_, marker) in enumerate(heads) if marker] == [0, 5, 8, 15]


async def test_telephone_events_keep_their_timestamp_and_duration_on_the_legs_stream(
    relay: UdpRelay, phones: dict[Leg, Phone]
) -> None:
    session = await relay.open("call-12")
    for leg, phone in phones.items():
        session.set_remote(leg, Endpoint("127.0.0.1", phone.port), G711.PCMU)
    session.forward(Leg.B)
    try:
        audio = [rtp(seq, b"\x33" * 160, ssrc=77) for seq in range(3)]
        # Digit 5: three packets of one event (one start timestamp, growing duration).
        events = [
            struct.pack("!BBHII", 0x80, 101 | 0x80 * (n == 0), 3 + n, 1000 + 3 * 160, 77)
            + struct.pack("!BBH", 5, 0x0A | 0x80 * (n == 2), 160 * (n + 1))
            for n in range(3)
        ]
        for packet in audio + events:
            phones[Leg.B].send(packet, session.local(Leg.B))
        heard = await phones[Leg.A].receive(6)
    finally:
        await session.close()
    assert [p[12:] for p in heard[3:]] == [p[12:] for p in events]
    assert [seq for seq, _ in steps(heard)] == [1] * 5
    assert [ts for _, ts in steps(heard)] == [160, 160, 160, 0, 0]
    assert [(p[1] & 0x7F, header(p)[3]) for p in heard] == [
        (0, True), (0, False), (0, False), (101, True), (101, False), (101, False)
    ]  # fmt: skip


async def test_sender_reports_to_a_leg_describe_the_stream_it_hears(
    phones: dict[Leg, Phone],
) -> None:
    relay = UdpRelay(
        bind_host="127.0.0.1",
        advertise="127.0.0.1",
        ports=range(26400, 26409, 2),
        rtcp_interval=0.1,
    )
    session = await relay.open("call-13")
    rtcp = {Leg.A: Phone(), Leg.B: Phone()}
    try:
        for leg, phone in phones.items():
            session.set_remote(leg, Endpoint("127.0.0.1", phone.port), G711.PCMU)
            # Each leg's first report tells us where it takes ours (as its RTCP port).
            local = session.local(leg)
            rtcp[leg].send(sender_report(0xB0B0B0B0), Endpoint(local.host, local.port + 1))
        await session.play(Leg.A, b"\x7f" * 5 * PTIME_SAMPLES, repeat=False)
        session.forward(Leg.B)
        for seq in range(15):
            phones[Leg.B].send(rtp(seq, b"\x22" * 160, ssrc=0xB0B0B0B0), session.local(Leg.B))
        heard = await phones[Leg.A].receive(20)
        reports = await reports_until(rtcp[Leg.A], packets=20)
    finally:
        await session.close()
        await relay.close()
        for phone in rtcp.values():
            phone.close()
    ssrc = header(heard[0])[0]
    last_ts = header(heard[-1])[2]
    # Every report is about A's own stream (B's report is not relayed to it) and
    # never counts more than A had been sent; the last counts all of it.
    assert {r.ssrc for r in reports} == {ssrc}
    assert all(r.packets <= 20 and r.octets == r.packets * 160 for r in reports)
    assert (reports[-1].packets, reports[-1].octets) == (20, 20 * 160)
    assert 0 <= (reports[-1].rtp_ts - last_ts) & 0xFFFFFFFF < 0x80000000
    assert reports[-1].cname == b"maskline@127.0.0.1"


def sender_report(ssrc: int) -> bytes:
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Report:
    ssrc: int
    rtp_ts: int
    packets: int
    octets: int
    cname: bytes


async def reports_until(phone: Phone, *, packets: int, within: float = 5.0) -> list[Report]:
    """The sender reports ``phone`` receives, up to the first that counts ``packets``."""
    got: list[Report] = []
    async with asyncio.timeout(within):
        while not got or got[-1].packets < packets:
            (data,) = await phone.receive(1, within=within)
            assert (data[0] & 0x1F, data[1]) == (0, 200), data  # an SR, no report blocks
            ssrc, _, _, rtp_ts, count, octets = struct.unpack_from("!IIIIII", data, 4)
            sdes = data[28:]
            assert (sdes[1], struct.unpack_from("!I", sdes, 4)[0]) == (202, ssrc), data
            cname = sdes[10 : 10 + sdes[9]] if sdes[8] == 1 else b""
            got.append(Report(ssrc, rtp_ts, count, octets, cname))
    return got


async def test_a_closed_session_is_freed_at_once_not_left_to_the_garbage_collector(
    relay: UdpRelay, phones: dict[Leg, Phone]
) -> None:
    # An engine at 100 calls/s ends 100 sessions a second: left in reference cycles, each
    # waited for a collection that walks every live object of the process.
    session = await relay.open("freed-1")
    for leg, phone in phones.items():
        session.set_remote(leg, Endpoint("127.0.0.1", phone.port), G711.PCMU)
    session.forward(Leg.A)
    playing = session.play(Leg.B, b"\x7f" * 1600, repeat=True)
    phones[Leg.A].send(rtp(1, b"\xff" * 160), session.local(Leg.A))
    assert len(await phones[Leg.B].receive(2)) == 2
    freed = weakref.ref(session)
    gc.disable()
    try:
        await session.close()
        await asyncio.gather(playing, return_exceptions=True)
        del session, playing
        await asyncio.sleep(0)  # the loop lets go of the tasks it finished
        assert freed() is None
    finally:
        gc.enable()


async def test_a_stray_stream_at_ports_being_opened_is_dropped_not_raised() -> None:
    # A far end still sending to a port pair the relay is binding for a new call (the
    # stream of the call that had it before): the packets that arrive before the new
    # session's legs are set up are dropped, as any before the leg's SDP, and nothing
    # reaches the loop's exception handler (it did: a KeyError for the leg).
    relay = UdpRelay(bind_host="127.0.0.1", advertise="127.0.0.1", ports=range(26600, 26603, 2))
    loop = asyncio.get_running_loop()
    raised: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: raised.append(context))
    stray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stray.setblocking(False)
    sending = True

    async def flood() -> None:
        packet = rtp(1, bytes(PTIME_SAMPLES))
        while sending:
            for port in range(26600, 26604):  # both pairs, RTP and RTCP: whichever is bound
                stray.sendto(packet, ("127.0.0.1", port))
            await asyncio.sleep(0)

    flooding = asyncio.create_task(flood())
    ports = set()
    try:
        for _ in range(50):
            session = await relay.open("CAstray", (Leg.A,))
            ports.add(session.local(Leg.A).port)
            await session.close()
    finally:
        sending = False
        try:
            await flooding
        finally:
            stray.close()
            loop.set_exception_handler(previous)
            await relay.close()
    assert ports <= {26600, 26602}
    assert raised == []
