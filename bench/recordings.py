"""Issue 6's recording figure: how fast the worker turns a call's spool into its MP3."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from maskline.recordings.encode import encode_mp3
from maskline.telephony.sim.audio import FRAME_MS, TONE_HZ, tone_frames

CALL_SEC = 300


def encode_speed(call_sec: int = CALL_SEC, runs: int = 3) -> str:
    frames = call_sec * 1000 // FRAME_MS
    with tempfile.TemporaryDirectory(prefix="maskline-bench-") as tmp:
        spool = Path(tmp)
        left, right = spool / "a.pcm", spool / "b.pcm"
        left.write_bytes(tone_frames(TONE_HZ["party_a"], 0, frames))
        right.write_bytes(tone_frames(TONE_HZ["party_b"], 0, frames))
        took = []
        for run in range(runs):
            start = time.perf_counter()
            encoded = encode_mp3(left, right, spool / f"{run}.mp3")
            took.append(time.perf_counter() - start)
    best = min(took)
    return (
        f"recording encode (8 kHz spool → 16 kHz stereo MP3, one thread): a {call_sec} s call "
        f"in {best:.2f} s ({call_sec / best:.0f}× real time, best of {runs}); "
        f"{encoded.size_bytes / call_sec * 60 / 1024:.0f} KiB per minute"
    )
