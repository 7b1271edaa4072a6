"""Synthetic audio for the sandbox: one steady tone per party, in 20 ms frames of 8 kHz PCM."""

from __future__ import annotations

import math
import struct
from functools import cache

SAMPLE_RATE = 8000
FRAME_MS = 20
SAMPLES_PER_FRAME = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = SAMPLES_PER_FRAME * 2
AMPLITUDE = 8000

# Whole cycles in one second, so a one-second buffer loops without a click.
TONE_HZ = {"party_a": 440, "party_b": 1000}


@cache
def tone_second(frequency: int) -> bytes:
    """One second of a sine tone as 16-bit little-endian PCM."""
    samples = (
        round(AMPLITUDE * math.sin(2 * math.pi * frequency * n / SAMPLE_RATE))
        for n in range(SAMPLE_RATE)
    )
    return struct.pack(f"<{SAMPLE_RATE}h", *samples)


def tone_frames(frequency: int, first_frame: int, count: int) -> bytes:
    """``count`` frames of the tone, starting at frame number ``first_frame``."""
    second = tone_second(frequency)
    frames_per_second = SAMPLE_RATE // SAMPLES_PER_FRAME
    out = bytearray()
    for index in range(first_frame, first_frame + count):
        offset = (index % frames_per_second) * FRAME_BYTES
        out += second[offset : offset + FRAME_BYTES]
    return bytes(out)
