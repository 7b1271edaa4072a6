"""Two spool files (A, B) → one stereo MP3: A left, B right, 16 kHz (SPEC §5).

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


class NoAudio(Exception):
    """Neither leg's spool holds any audio."""


class Aborted(Exception):
    """The encode was asked to stop (the worker is shutting down)."""


@dataclass(frozen=True, slots=True)
class Encoded:
    duration_ms: int
    size_bytes: int


def _samples_in(path: Path) -> int:
    try:
        return path.stat().st_size // BYTES_PER_SAMPLE
    except FileNotFoundError:
        return 0


def _read(handle: BinaryIO | None, samples: int) -> bytes:
    """``samples`` samples from ``handle``, padded with silence where the leg has none."""
    want = samples * BYTES_PER_SAMPLE
    data = handle.read(want) if handle is not None else b""
    return data + bytes(want - len(data))


def encode_mp3(
    left: Path, right: Path, out: Path, *, abort: threading.Event | None = None
) -> Encoded:
    """Encode the legs' spool files into ``out`` (written whole, then renamed into place).

    ``abort``, once set, stops the encode between seconds of audio (``Aborted``).
    """
    total = max(_samples_in(left), _samples_in(right))
    if total == 0:
        raise NoAudio("the spool holds no audio")
    private_directory(out.parent)
    partial = out.with_name(f"{out.name}.partial")
    handles = [path.open("rb") if path.exists() else None for path in (left, right)]
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
            if handle is not None:
                handle.close()
        partial.unlink(missing_ok=True)
    return Encoded(duration_ms=total * 1000 // SPOOL_RATE, size_bytes=out.stat().st_size)
