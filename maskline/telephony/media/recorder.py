"""The recorder: while a call is bridged, each party's audio goes to a spool file.

Appending raw PCM is all that happens on the call's path; the worker turns the
two spool files into the stereo MP3 later (recordings/encode.py). The spool is
16-bit little-endian PCM at 8 kHz, one file per leg, both starting at the bridge.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import BinaryIO

from maskline.kit.private_files import create_private_file, private_directory
from maskline.telephony.carrier import MediaSink
from maskline.telephony.events import Leg

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160
_SAFE_NAME = re.compile(r"[0-9A-Za-z_-]{1,64}")


class Spool:
    """The directory recorders write to and the worker reads from."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def paths(self, call_sid: str) -> dict[Leg, Path]:
        if not _SAFE_NAME.fullmatch(call_sid):
            raise ValueError(f"not a call sid: {call_sid!r}")
        return {
            Leg.A: self.directory / f"{call_sid}.a.pcm",
            Leg.B: self.directory / f"{call_sid}.b.pcm",
        }

    def recorder(self, call_sid: str) -> SpoolRecorder:
        private_directory(self.directory)
        return SpoolRecorder(self.paths(call_sid))

    def discard(self, call_sid: str) -> None:
        for path in self.paths(call_sid).values():
            path.unlink(missing_ok=True)


class SpoolRecorder:
    """A ``MediaSink`` that appends each leg's audio to its spool file.

    The files are created (emptied) here, or with ``created=True`` taken over as they are:
    the SIP process records into the spool files its engine created (``sip/process.py``).
    """

    def __init__(self, paths: dict[Leg, Path], *, created: bool = False) -> None:
        self.paths = dict(paths)
        self._files: dict[Leg, BinaryIO] = {}
        try:
            for leg, path in paths.items():
                fd = (
                    os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
                    if created
                    else create_private_file(path)
                )
                self._files[leg] = os.fdopen(fd, "ab" if created else "wb")
        except BaseException:
            self.close()
            raise

    def on_audio(self, leg: Leg, pcm: bytes) -> None:
        handle = self._files.get(leg)
        if handle is not None and not handle.closed:
            handle.write(pcm)

    def close(self) -> None:
        for handle in self._files.values():
            with contextlib.suppress(OSError):
                handle.close()


class FromTheBridge:
    """A ``MediaSink`` in front of another that starts both channels at the bridge.

    The RTP relay places audio from the first packet of either leg on (that packet is its
    sample 0). The time from the bridge (``since``, on ``time.monotonic`` like the relay's
    own placement: RTP audio runs in real time) to that packet is written here first, as
    silence in both channels, in whole 20 ms frames (SPEC §5).
    """

    def __init__(self, sink: MediaSink, *, since: float) -> None:
        self._sink = sink
        self._since = since
        self._started = False

    def on_audio(self, leg: Leg, pcm: bytes) -> None:
        if not self._started:
            self._started = True
            frames = round((time.monotonic() - self._since) * SAMPLE_RATE / FRAME_SAMPLES)
            if frames > 0:
                silence = bytes(2 * FRAME_SAMPLES * frames)
                for each in Leg:
                    self._sink.on_audio(each, silence)
        self._sink.on_audio(leg, pcm)

    def close(self) -> None:
        self._sink.close()
