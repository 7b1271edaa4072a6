"""Listening to audio in tests: a tone's frequency, and MP3 files decoded."""

from __future__ import annotations

import io
import math
import struct
from array import array
from dataclasses import dataclass

import av

CANDIDATE_HZ = (220, 300, 400, 440, 600, 880, 1000, 1400, 2000)


def dominant_hz(pcm: bytes, rate: int = 8000) -> int:
    """The strongest of CANDIDATE_HZ in the first second of mono 16-bit PCM (a plain DFT)."""
    samples = struct.unpack(f"<{rate}h", pcm[: rate * 2])

    def power(freq: int) -> float:
        step = 2 * math.pi * freq / rate
        re = sum(s * math.cos(step * n) for n, s in enumerate(samples))
        im = sum(s * math.sin(step * n) for n, s in enumerate(samples))
        return re * re + im * im

    return max(CANDIDATE_HZ, key=power)


@dataclass(frozen=True)
class Decoded:
    codec: str
    channels: int
    rate: int
    left: bytes
    right: bytes

    @property
    def seconds(self) -> float:
        return len(self.left) / 2 / self.rate


def decode_mp3(data: bytes) -> Decoded:
    """Decode an MP3 to 16-bit PCM per channel (with FFmpeg's decoder, through PyAV)."""
    with av.open(io.BytesIO(data), format="mp3") as container:
        stream = container.streams.audio[0]
        codec, channels, rate = stream.codec_context.name, stream.channels, stream.rate
        assert channels == 2, channels
        to_s16 = av.AudioResampler(format="s16", layout="stereo", rate=rate)
        interleaved = array("h")
        for frame in container.decode(stream):
            for packed in to_s16.resample(frame):
                interleaved.frombytes(bytes(packed.planes[0])[: packed.samples * 4])
    return Decoded(codec, channels, rate, interleaved[0::2].tobytes(), interleaved[1::2].tobytes())


def frames_with(pcm: bytes, hz: int, *, rate: int = 8000, frame: int = 160) -> list[bool]:
    """For each ``frame`` samples of mono 16-bit PCM: is it (mostly) a tone of ``hz``?

    A Goertzel filter at ``hz``: a frame qualifies when it is not near-silence and
    more than half its energy is at that frequency (``hz`` a multiple of rate/frame).
    """
    count = len(pcm) // (2 * frame)
    samples = struct.unpack(f"<{count * frame}h", pcm[: count * frame * 2])
    coefficient = 2 * math.cos(2 * math.pi * hz / rate)
    found: list[bool] = []
    for start in range(0, count * frame, frame):
        chunk = samples[start : start + frame]
        energy = sum(s * s for s in chunk)
        before = earlier = 0.0
        for sample in chunk:
            before, earlier = sample + coefficient * before - earlier, before
        power = before * before + earlier * earlier - coefficient * before * earlier
        # A pure tone of amplitude A gives power (A*frame/2)^2 and energy A^2*frame/2.
        found.append(energy > frame * 100**2 and power > 0.5 * energy * frame / 2)
    return found


def longest_run(flags: list[bool], *, bridging: int = 0) -> int:
    """The most consecutive True values in ``flags``; with ``bridging``, a gap of at most
    that many False values inside a run counts as part of it (a frame a loaded phone
    played late or not at all)."""
    best = run = gap = 0
    for flag in flags:
        if flag:
            run, gap = run + gap + 1, 0
            best = max(best, run)
        elif run and gap < bridging:
            gap += 1
        else:
            run = gap = 0
    return best
