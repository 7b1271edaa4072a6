"""One continuous outgoing RTP stream per leg (ARCHITECTURE §5), as SBCs keep one.

Everything a phone receives from us goes through its leg's ``OutboundStream``:
our tones and the other leg's relayed packets alike. The stream has one SSRC for
the life of the leg; each packet's sequence number and timestamp are mapped onto
it by an offset fixed when its source starts (a new tone, the other leg's media,
a new SSRC or a sequence jump of that leg), so the numbers carry on across every
switch, and the packets of one source keep their own steps: a loss stays a gap,
a reordering stays one, a telephone-event keeps its start timestamp and
duration. The first packet after a switch carries the marker bit. The stream
also writes the RTCP sender reports that describe it (we terminate RTCP per leg:
a phone never sees the other party's reports, which name an SSRC it never hears).

Pure protocol logic: no sockets; the relay feeds it packets and the time.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Hashable
from dataclasses import dataclass

RTP_HEADER = 12
SAMPLE_RATE = 8000
FRAME_SAMPLES = 160
# RFC 3550 A.1: a step ahead this large, or back further than a reordering can
# explain, is the source starting over (not a loss): the stream re-anchors on it.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
AUDIO_PAYLOAD_TYPES = frozenset({0, 8})  # G.711: one octet per sample
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


def payload_span(data: bytes) -> tuple[int, int] | None:
    """Where an RTP packet's payload starts and ends (after CSRCs and a header
    extension, before padding); None if the packet is too short to say."""
    if len(data) < RTP_HEADER:
        return None
    offset = RTP_HEADER + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data) - (data[-1] if data[0] & 0x20 else 0)  # padding
    if end < offset:
        return None
    return offset, end


@dataclass(slots=True)
class _Source:
    key: tuple[Hashable, int]  # who sends it, and its SSRC
    seq_offset: int
    ts_offset: int
    highest_seq: int


class OutboundStream:
    """The RTP stream we send one leg, and the sender reports about it."""

    def __init__(self, *, cname: str) -> None:
        self.ssrc = secrets.randbits(32)
        self.cname = cname.encode()[:255]
        self.packets = 0
        self.octets = 0
        self._next_seq = secrets.randbits(16)
        self._first_ts = secrets.randbits(32)
        self._last_ts: int | None = None
        self._last_duration = FRAME_SAMPLES
        self._last_sent = 0.0
        self._source: _Source | None = None

    def rewrite(self, source: Hashable, data: bytes, *, now: float) -> bytes | None:
        """``data`` (an RTP packet from ``source``) as the next packet of this stream;
        ``now`` is the monotonic time it is sent. None for a packet too short to relay."""
        span = payload_span(data)
        if span is None:
            return None
        in_seq, in_ts, in_ssrc = struct.unpack_from("!HII", data, 2)
        current = self._source
        newest = True
        if current is None or current.key != (source, in_ssrc):
            current = self._switch((source, in_ssrc), in_seq, in_ts, now=now)
            switched = True
        else:
            step = (in_seq - current.highest_seq) & 0xFFFF
            switched = MAX_DROPOUT <= step < 0x10000 - MAX_MISORDER
            if switched:
                current = self._switch((source, in_ssrc), in_seq, in_ts, now=now)
            newest = switched or 0 < step < MAX_DROPOUT
        out_seq = (in_seq + current.seq_offset) & 0xFFFF
        out_ts = (in_ts + current.ts_offset) & 0xFFFFFFFF
        payload_type = data[1] & 0x7F
        if newest:
            current.highest_seq = in_seq
            self._next_seq = (out_seq + 1) & 0xFFFF
            self._last_ts = out_ts
            self._last_sent = now
            if payload_type in AUDIO_PAYLOAD_TYPES:
                self._last_duration = span[1] - span[0]
        out = bytearray(data)
        out[1] = (0x80 if switched or data[1] & 0x80 else 0) | payload_type
        struct.pack_into("!HII", out, 2, out_seq, out_ts, self.ssrc)
        self.packets += 1
        self.octets += span[1] - span[0]
        return bytes(out)

    def _switch(self, key: tuple[Hashable, int], in_seq: int, in_ts: int, *, now: float) -> _Source:
        """A new source takes over: its first packet follows ours, one packet time (or
        the time that has passed since, if longer) after our last timestamp."""
        if self._last_ts is None:
            start_ts = self._first_ts
        else:
            elapsed = round((now - self._last_sent) * SAMPLE_RATE)
            start_ts = self._last_ts + max(self._last_duration, elapsed)
        self._source = _Source(
            key=key,
            seq_offset=self._next_seq - in_seq,
            ts_offset=start_ts - in_ts,
            highest_seq=in_seq,
        )
        return self._source

    def sender_report(self, *, now: float, wall: float) -> bytes | None:
        """A compound RTCP packet (SR without report blocks, then SDES CNAME) for the
        stream as sent so far; ``now`` is monotonic, ``wall`` Unix time, both of this
        instant. None before the first packet (a stream that has not started has
        nothing to report)."""
        if self._last_ts is None:
            return None
        rtp_ts = (self._last_ts + round((now - self._last_sent) * SAMPLE_RATE)) & 0xFFFFFFFF
        ntp = wall + NTP_UNIX_OFFSET
        seconds = int(ntp)
        fraction = int((ntp - seconds) * (1 << 32)) & 0xFFFFFFFF
        report = struct.pack(
            "!BBHIIIIII",
            0x80,
            200,
            6,
            self.ssrc,
            seconds & 0xFFFFFFFF,
            fraction,
            rtp_ts,
            self.packets & 0xFFFFFFFF,
            self.octets & 0xFFFFFFFF,
        )
        item = bytes([1, len(self.cname)]) + self.cname
        chunk = struct.pack("!I", self.ssrc) + item
        chunk += bytes(4 - len(chunk) % 4)  # the item list ends with a null, padded to 32 bits
        sdes = struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk
        return report + sdes
