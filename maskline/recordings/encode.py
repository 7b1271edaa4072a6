"""Two spool files (A, B) → one stereo MP3: A left, B right, 16 kHz (SPEC §5).

The MP3 lasts as long as the bridge: where a leg's spool holds no audio (a muted
phone, lost packets, a silent trunk, or no packet at all) its channel is silence.

PyAV (FFmpeg's libraries, bundled in its wheel) resamples with libswresample
and encodes with LAME; its MP3 muxer writes the Xing/LAME header that gives
players the exact duration. Nothing is hand-written here but the plumbing.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av

from maskline.kit.private_files import create_private_file, private_directory

SPOOL_RATE = 8000
MP3_RATE = 16000
BIT_RATE = 32_000
CHUNK_SAMPLES = SPOOL_RATE  # one second per frame handed to the encoder
BYTES_PER_SAMPLE = 2
# A bridge too short to measure still gets a file: one 20 ms frame of silence.
MIN_SAMPLES = SPOOL_RATE // 50


class Aborted(Exception):
    """The encode was asked to stop (the worker is shutting down)."""


class SpoolMissing(Exception):
    """A leg's spool file is gone: the call's audio was lost (a fault of maskline)."""


@dataclass(frozen=True, slots=True)
class Encoded:
    duration_ms: int
    size_bytes: int


def _samples_in(path: Path) -> int:
    try:
        return path.stat().st_size // BYTES_PER_SAMPLE
    except FileNotFoundError:
        return 0


def _read(handle: BinaryIO, samples: int) -> bytes:
    """``samples`` samples from ``handle``, padded with silence where the leg has none."""
    want = samples * BYTES_PER_SAMPLE
    data = handle.read(want)
    return data + bytes(want - len(data))


def encode_mp3(
    left: Path,
    right: Path,
    out: Path,
    *,
    seconds: float | None = None,
    abort: threading.Event | None = None,
) -> Encoded:
    """Encode the legs' spool files into ``out`` (written whole, then renamed into place),
    ``seconds`` long (the bridge's length: a spool that ends early, or is missing, is
    silence from there on, and audio past the end is left out), or without ``seconds`` as
    long as the longer spool.

    ``abort``, once set, stops the encode between seconds of audio (``Aborted``).
    ``SpoolMissing`` when a leg's spool file is not there at all: the recorder creates
    both at the bridge, so a missing one is audio maskline lost (SPEC §5: ``failed``),
    unlike an empty one, which is a leg that sent nothing (silence).
    """
    missing = [path.name for path in (left, right) if not path.exists()]
    if missing:
        raise SpoolMissing(f"the call's audio is missing from the spool: {', '.join(missing)}")
    if seconds is None:
        total = max(_samples_in(left), _samples_in(right))
    else:
        total = int(seconds * SPOOL_RATE)
    total = max(total, MIN_SAMPLES)
    private_directory(out.parent)
    partial = out.with_name(f"{out.name}.partial")
    handles = [path.open("rb") for path in (left, right)]
    try:
        # Made 0600 first: the encoder opens the existing file, which keeps that mode.
        os.close(create_private_file(partial))
        # No ID3 tag: the file starts with the Xing/LAME frame.
        with av.open(str(partial), "w", format="mp3", options={"id3v2_version": "0"}) as box:
            stream = box.add_stream("libmp3lame", rate=MP3_RATE, layout="stereo")
            stream.bit_rate = BIT_RATE
            resampler = av.AudioResampler(
                format=stream.codec_context.format.name, layout="stereo", rate=MP3_RATE
            )
            done = 0
            while done < total:
                if abort is not None and abort.is_set():
                    raise Aborted()
                count = min(CHUNK_SAMPLES, total - done)
                frame = av.AudioFrame(format="s16p", layout="stereo", samples=count)
                frame.sample_rate = SPOOL_RATE
                frame.pts = done
                for plane, handle in zip(frame.planes, handles, strict=True):
                    plane.update(_read(handle, count))
                for resampled in resampler.resample(frame):
                    box.mux(stream.encode(resampled))
                done += count
            for resampled in resampler.resample(None):
                box.mux(stream.encode(resampled))
            box.mux(stream.encode(None))
        os.replace(partial, out)
    finally:
        for handle in handles:
            handle.close()
        partial.unlink(missing_ok=True)
    return Encoded(duration_ms=total * 1000 // SPOOL_RATE, size_bytes=out.stat().st_size)
