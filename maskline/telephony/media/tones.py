"""Tones we play, as ready-made G.711 payloads.

Indian network cadences (400 Hz): ringback while B rings, and the busy tone
that A hears for a moment before we hang up when B could not be reached. And
the announcement for a call to a masked number (there is no speech synthesis):
the ITU-T special information tone (E.180/Q.35: 950, 1400, 1800 Hz, rising),
which networks put before "the number you have called cannot be reached".
Each is synthesised once and encoded once per codec with FFmpeg's G.711 encoders.
"""

from __future__ import annotations

import math
import struct
from functools import cache

import av

from maskline.telephony.media.g711 import G711

SAMPLE_RATE = 8000
TONE_HZ = 400
AMPLITUDE = 6000
# (hz, on, off): a tone, then silence, in milliseconds.
Cadence = tuple[tuple[int, int, int], ...]
RINGBACK: Cadence = ((TONE_HZ, 400, 200), (TONE_HZ, 400, 2000))
BUSY: Cadence = ((TONE_HZ, 750, 750),)
SIT_HZ = (950, 1400, 1800)
SIT_SEGMENT_MS = 330
SIT_GAP_MS = 30
SIT_PAUSE_MS = 1000
SIT_REPEATS = 2
_SIT_ONCE: Cadence = (
    (SIT_HZ[0], SIT_SEGMENT_MS, SIT_GAP_MS),
    (SIT_HZ[1], SIT_SEGMENT_MS, SIT_GAP_MS),
    (SIT_HZ[2], SIT_SEGMENT_MS, SIT_PAUSE_MS),
)
ANNOUNCEMENT: Cadence = _SIT_ONCE * SIT_REPEATS

_ENCODERS = {G711.PCMU: "pcm_mulaw", G711.PCMA: "pcm_alaw"}


def _pcm(cadence: Cadence) -> bytes:
    samples: list[int] = []
    for hz, on_ms, off_ms in cadence:
        on = on_ms * SAMPLE_RATE // 1000
        samples += (
            round(AMPLITUDE * math.sin(2 * math.pi * hz * n / SAMPLE_RATE)) for n in range(on)
        )
        samples += [0] * (off_ms * SAMPLE_RATE // 1000)
    return struct.pack(f"<{len(samples)}h", *samples)


def _encode(codec: G711, pcm: bytes) -> bytes:
    context = av.CodecContext.create(_ENCODERS[codec], "w")
    assert isinstance(context, av.AudioCodecContext)
    context.sample_rate = SAMPLE_RATE
    context.layout = "mono"
    context.format = "s16"
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
    frame.sample_rate = SAMPLE_RATE
    frame.planes[0].update(pcm)
    packets = [*context.encode(frame), *context.encode(None)]
    return b"".join(bytes(p) for p in packets)


@cache
def ringback(codec: G711) -> bytes:
    """One 3-second ringback cycle, to be looped."""
    return _encode(codec, _pcm(RINGBACK))


@cache
def busy(codec: G711) -> bytes:
    """One and a half seconds of busy tone, played once."""
    return _encode(codec, _pcm(BUSY))


@cache
def announcement(codec: G711) -> bytes:
    """The special information tone twice (about 4 s), played once to a call to a
    masked number before we hang up."""
    return _encode(codec, _pcm(ANNOUNCEMENT))
