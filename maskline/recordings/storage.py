"""Where finished recordings live, behind an interface an object store can implement.

Keys look like ``{org_id}/{call_sid}.mp3``. The embedded mode keeps them under
``MASKLINE_DATA_DIR/recordings``; an S3-compatible backend would implement the
same four methods (``local_path`` then streaming through a ranged GET instead).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Protocol

from maskline.kit.private_files import PRIVATE_FILE, create_private_file, private_directory

_KEY = re.compile(r"[0-9A-Za-z_-]{1,64}/[0-9A-Za-z_-]{1,64}\.mp3")


def object_key(org_id: str, call_sid: str) -> str:
    key = f"{org_id}/{call_sid}.mp3"
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a recording key: {key!r}")
    return key


class Storage(Protocol):
    def put(self, key: str, source: Path) -> int:
        """Store ``source`` (consumed) under ``key``; returns its size in bytes."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file to stream for ``key``, or None when it is not there."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` for good (no error if it is already gone)."""
        ...


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a recording key: {key!r}")
        return self.root / key

    def put(self, key: str, source: Path) -> int:
        target = self._path(key)
        private_directory(self.root)
        private_directory(target.parent)
        # Narrowed before it is swapped in: the file is never readable by others there.
        source.chmod(PRIVATE_FILE)
        try:
            os.replace(source, target)
        except OSError:  # another file system: copy, then swap in atomically
            staged = target.with_name(f"{target.name}.partial")
            with os.fdopen(create_private_file(staged), "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out)
            os.replace(staged, target)
            source.unlink(missing_ok=True)
        return target.stat().st_size

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
