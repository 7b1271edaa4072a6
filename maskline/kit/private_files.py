"""Files only the service's own user may read: call audio (the spool, the recordings)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_directory(path: Path) -> None:
    """Create ``path`` (and missing parents) for this user only; a directory made
    earlier with a wider mode (by an older version) is narrowed."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR:
        path.chmod(PRIVATE_DIR)


def create_private_file(path: Path) -> int:
    """Open ``path`` for writing, created (or emptied) with mode 0600; a file descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)  # an existing file keeps its mode through O_CREAT
    return fd
