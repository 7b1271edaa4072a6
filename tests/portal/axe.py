"""axe-core for the browser suite's accessibility check: the npm registry's package at a
pinned version, checked against its digest, unpacked once into a git-ignored folder."""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tarfile
from pathlib import Path

AXE_VERSION = "4.10.3"
AXE_SHA256 = "0f2b4d7dcdf7d1219df8d1959ad68e565f51d14c3f0d88bb71cd59abeb956292"
CACHE = Path(__file__).parent / ".axe"


def axe_script() -> Path:
    """``axe.min.js`` of axe-core ``AXE_VERSION`` (``npm pack`` on first use)."""
    script = CACHE / AXE_VERSION / "axe.min.js"
    if script.exists():
        return script
    script.parent.mkdir(parents=True, exist_ok=True)
    # One fetch at a time: both suites' xdist workers share the checkout's cache.
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not script.exists():
            _fetch(script)
    return script


def _fetch(script: Path) -> None:
    subprocess.run(
        ["npm", "pack", f"axe-core@{AXE_VERSION}", "--silent", "--pack-destination", str(CACHE)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    packed = CACHE / f"axe-core-{AXE_VERSION}.tgz"
    digest = hashlib.sha256(packed.read_bytes()).hexdigest()
    assert digest == AXE_SHA256, f"axe-core {AXE_VERSION} from npm has digest {digest}"
    with tarfile.open(packed) as archive:
        member = archive.extractfile("package/axe.min.js")
        assert member is not None
        part = script.with_suffix(".part")
        part.write_bytes(member.read())
    part.replace(script)  # whole, for a reader that does not take the lock
    packed.unlink()
