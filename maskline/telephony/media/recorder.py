"""The recorder: while a call is bridged, each party's audio goes to a spool file.

Appending raw PCM is all that happens on the call's path; the worker turns the
two spool files into the stereo MP3 later (recordings/encode.py). The spool is
16-bit little-endian PCM at 8 kHz, one file per leg, both starting at the bridge.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import BinaryIO

from maskline.kit.private_files import create_private_file, private_directory
from maskline.telephony.events import Leg

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
    """A ``MediaSink`` that appends each leg's audio to its spool file."""

    def __init__(self, paths: dict[Leg, Path]) -> None:
        self._files: dict[Leg, BinaryIO] = {}
        try:
            for leg, path in paths.items():
                self._files[leg] = os.fdopen(create_private_file(path), "wb")
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
