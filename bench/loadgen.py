"""The load generator for the HTTP benchmarks: wrk (Debian's package), a C program.

A Python client on these 2 cores saturates itself before the server and hides the
gap between servers; wrk does not. ``run_wrk`` runs ``bench/wrk/post_calls.lua`` and
reads wrk's own figures (``--latency``) and the status counts the script prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

POST_CALLS = Path(__file__).resolve().parent / "wrk" / "post_calls.lua"
# wrk counts a request still unanswered after this long as a timeout and leaves it out
# of the latency figures: long enough that a slow server shows as latency.
TIMEOUT_SEC = 30
_UNIT_SEC = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run measured."""

    seconds: float
    # Responses by HTTP status, from the script's done().
    statuses: dict[int, int]
    # Requests that got no response: wrk's socket errors (connect, read, write, timeout).
    socket_errors: dict[str, int]
    p50_sec: float
    p99_sec: float

    def rate(self, status: int = 201) -> float:
        """Responses of ``status`` a second."""
        return self.statuses.get(status, 0) / self.seconds

    def other_than(self, status: int = 201) -> dict[str, int]:
        """Every outcome but ``status``, by status or socket error; empty when none."""
        others = {str(s): n for s, n in sorted(self.statuses.items()) if s != status and n}
        others.update({name: n for name, n in self.socket_errors.items() if n})
        return others


def _seconds(value: str, unit: str) -> float:
    return float(value) * _UNIT_SEC[unit]


def parse_wrk_output(output: str) -> WrkRun:
    """wrk's ``--latency`` report followed by post_calls.lua's ``statuses:`` line."""
    ran = re.search(rf"^\s*(\d+) requests in {_TIME}", output, re.MULTILINE)
    p50 = re.search(rf"^\s*50(?:\.0+)?%\s+{_TIME}", output, re.MULTILINE)
    p99 = re.search(rf"^\s*99(?:\.0+)?%\s+{_TIME}", output, re.MULTILINE)
    statuses = re.search(r"^statuses: (\{.*\})$", output, re.MULTILINE)
    if not (ran and p50 and p99 and statuses):
        raise RuntimeError(f"wrk's output is not as expected:\n{output}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    names = ("connect", "read", "write", "timeout")
    return WrkRun(
        seconds=_seconds(ran[2], ran[3]),
        statuses={int(s): n for s, n in json.loads(statuses[1]).items()},
        socket_errors=dict(zip(names, map(int, errors.groups()), strict=True)) if errors else {},
        p50_sec=_seconds(p50[1], p50[2]),
        p99_sec=_seconds(p99[1], p99[2]),
    )


def run_wrk(
    targets: list[str],
    key: str,
    *,
    block: int,
    connections: int,
    threads: int,
    seconds: float,
) -> WrkRun:
    """POST new calls to ``targets`` (``host:port``; wrk's threads take them in turn)
    for ``seconds``, with the numbers of blocks ``block`` to ``block + threads - 1``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    command = [
        wrk, f"--threads={threads}", f"--connections={connections}",
        f"--duration={seconds:.0f}s", f"--timeout={TIMEOUT_SEC}s", "--latency",
        f"--script={POST_CALLS}", f"http://{targets[0]}", "--", key, str(block),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        env={**os.environ, "WRK_TARGETS": " ".join(targets)},
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + TIMEOUT_SEC + 30,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk_output(done.stdout)
