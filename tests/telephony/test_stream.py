"""One leg's outgoing stream (ARCHITECTURE §5), fed packets directly: how a source's
own losses, reorderings and restarts come out on the leg's one stream."""

from __future__ import annotations

import struct

from maskline.telephony.media.stream import OutboundStream


def packet(seq: int, timestamp: int, *, ssrc: int = 7, marker: bool = False) -> bytes:
    head = struct.pack("!BBHII", 0x80, 0x80 * marker, seq & 0xFFFF, timestamp, ssrc)
    return head + bytes([seq & 0xFF]) * 160


def sent(stream: OutboundStream, *packets: bytes, now: float = 0.0) -> list[tuple[int, int, bool]]:
    """(sequence, timestamp, marker) of each packet as the leg receives it, relative to
    the first one's sequence number and timestamp."""
    out = [stream.rewrite("B", p, now=now) for p in packets]
    heads = [(*struct.unpack_from("!HII", p, 2), bool(p[1] & 0x80)) for p in out if p]
    seq0, ts0 = heads[0][0], heads[0][1]
    assert {ssrc for _, _, ssrc, _ in heads} == {stream.ssrc}
    return [((s - seq0) & 0xFFFF, (t - ts0) & 0xFFFFFFFF, m) for s, t, _, m in heads]


def test_a_loss_stays_a_gap_and_a_reordering_stays_one() -> None:
    stream = OutboundStream(cname="test")
    assert sent(stream, packet(10, 1600), packet(12, 1920), packet(11, 1760), packet(13, 2080)) == [
        (0, 0, True), (2, 320, False), (1, 160, False), (3, 480, False)
    ]  # fmt: skip


def test_a_duplicate_keeps_its_number() -> None:
    stream = OutboundStream(cname="test")
    assert sent(stream, packet(10, 1600), packet(11, 1760), packet(11, 1760)) == [
        (0, 0, True), (1, 160, False), (1, 160, False)
    ]  # fmt: skip


def test_a_source_starting_over_under_the_same_ssrc_is_a_switch() -> None:
    stream = OutboundStream(cname="test")
    # Its sequence jumps 30000 ahead (past RFC 3550's MAX_DROPOUT): numbering carries
    # on from ours, with the marker, one packet time later.
    assert sent(stream, packet(10, 1600), packet(11, 1760), packet(30011, 99)) == [
        (0, 0, True), (1, 160, False), (2, 320, True)
    ]  # fmt: skip


def test_a_switch_after_a_silence_advances_the_timestamp_by_the_time_that_passed() -> None:
    stream = OutboundStream(cname="test")
    first = stream.rewrite("tone", packet(0, 0, ssrc=0), now=100.0)
    later = stream.rewrite("B", packet(500, 40, ssrc=9), now=102.5)
    assert first is not None
    assert later is not None
    (seq0, ts0), (seq1, ts1) = (
        struct.unpack_from("!HI", first, 2),
        struct.unpack_from("!HI", later, 2),
    )
    assert ((seq1 - seq0) & 0xFFFF, (ts1 - ts0) & 0xFFFFFFFF, bool(later[1] & 0x80)) == (
        1, 20000, True
    )  # fmt: skip


def test_no_sender_report_before_the_first_packet() -> None:
    assert OutboundStream(cname="test").sender_report(now=0.0, wall=0.0) is None
