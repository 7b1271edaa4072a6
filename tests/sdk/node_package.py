"""The Node client library (sdk/node) made ready for its tests: its dev dependencies
installed once per lock, the library and its tests compiled, and its OpenAPI types
generated from the document the server serves.

``python -m tests.sdk.node_package`` (``make sdk-node-types``) rewrites the committed
types, and the compiled library with them, after the API changed."""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).parents[2] / "sdk" / "node"
TYPES = NODE_DIR / "src" / "openapi.ts"
# The compiled library, committed: what `npm install ./sdk/node` gets (docs/decisions.md).
LIB = NODE_DIR / "lib"
MODULES = NODE_DIR / "node_modules"
# npm ci starts from an empty node_modules every time (seconds on a shared machine):
# a stamp of the lock it installed lets the next session keep it.
STAMP = MODULES / ".maskline-lock-sha256"


@contextmanager
def _exclusive() -> Iterator[None]:
    """One builder at a time: xdist workers share the checkout's node_modules."""
    with NODE_DIR.joinpath(".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(*command: str) -> None:
    done = subprocess.run(
        command, cwd=NODE_DIR, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


def _installed() -> None:
    lock = hashlib.sha256(NODE_DIR.joinpath("package-lock.json").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == lock:
        return
    # --ignore-scripts: the package's own `prepare` (tsc) is run by built() below.
    _run("npm", "ci", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund")
    STAMP.write_text(lock)


def built() -> Path:
    """The library and its tests compiled into ``dist`` (``dist/src``, ``dist/test``): one
    tsc program with ``--strict``, incremental, so a second session recompiles nothing."""
    with _exclusive():
        _installed()
        _run("node", "node_modules/typescript/bin/tsc", "-p", "tsconfig.test.json")
    return NODE_DIR / "dist"


def openapi_document() -> dict[str, Any]:
    """``/openapi.json`` as ``maskline serve`` builds it (the default settings' app)."""
    from maskline.app import create_app
    from maskline.settings import Settings

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    document: dict[str, Any] = create_app(settings).openapi()
    return document


def generated_types(document: dict[str, Any]) -> str:
    """openapi-typescript's output for ``document``."""
    with _exclusive():
        _installed()
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp, "openapi.json"), Path(tmp, "openapi.ts")
        source.write_text(json.dumps(document))
        _run("node", "node_modules/openapi-typescript/bin/cli.js", str(source), "-o", str(out))
        return out.read_text()


def main() -> None:
    """The types written again, and the committed ``lib/`` compiled from them."""
    TYPES.write_text(generated_types(openapi_document()))
    with _exclusive():
        _run("node", "node_modules/typescript/bin/tsc", "-p", "tsconfig.json")
    print(f"wrote {TYPES} and {LIB}")


if __name__ == "__main__":
    main()
