"""CPU and memory of the processes under benchmark, read from Linux's ``/proc``.

A ``Sampler`` is given groups of processes by name, each a function that lists the group's
pids now (so that processes started during the window count: a PostgreSQL backend, an
nginx worker). Between ``start()`` and ``stop()`` it reads every pid's CPU time and RSS
twice a second in a thread; a group's CPU is the CPU time its processes used inside the
window (a process that started after ``start()`` counts from zero) over the window's wall
time, 100 % being one core; its memory is the highest seen: a single process's RSS, or
the sum of several processes' PSS (``smaps_rollup``), which counts shared pages once.
The machine's busy time comes from ``/proc/stat``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
INTERVAL_SEC = 0.5


@dataclass(frozen=True)
class Usage:
    """A group's CPU (100 % a core) and peak memory: the RSS of a single process, the sum
    of PSS for several (their shared memory, such as PostgreSQL's buffers, counted once)."""

    cpu_percent: float
    cpu_sec: float
    memory_bytes: int
    processes: int

    def cell(self) -> str:
        pss = " PSS" if self.processes > 1 else ""
        return f"{self.cpu_percent:.0f}% {self.memory_bytes / 2**20:.0f} MiB{pss}"


@dataclass(frozen=True)
class Sample:
    cpu_sec: float  # user + system, all threads
    started: int  # clock ticks after boot
    rss: int
    pss: int  # shared pages divided among the processes that map them


def _stat(pid: int) -> Sample | None:
    """``pid`` now; None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces: the fields after it start past ')'.
    fields = stat.rpartition(")")[2].split()
    utime, stime, started = int(fields[11]), int(fields[12]), int(fields[19])
    memory = dict(line.split(":", 1) for line in rollup.splitlines()[1:])
    rss, pss = (int(memory[k].split()[0]) * 1024 for k in ("Rss", "Pss"))
    return Sample((utime + stime) / _TICK, started, rss, pss)


def _machine_ticks() -> tuple[int, int]:
    """All cores' ticks since boot: busy, total."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user … steal (guest time is counted in user already)
    return total - idle, total


def busy_percent(seconds: float) -> float:
    """The machine's CPU use over the next ``seconds`` (100 % a core)."""
    busy_before, total_before = _machine_ticks()
    time.sleep(seconds)
    busy, total = _machine_ticks()
    return 100 * (os.cpu_count() or 1) * (busy - busy_before) / max(total - total_before, 1)


def _uptime_ticks() -> float:
    return float(Path("/proc/uptime").read_text().split()[0]) * _TICK


def children(pid: int) -> list[int]:
    """``pid`` and its child processes (one level: nginx's master and its worker)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(c) for c in task.read_text().split()]
    return found


def pids_with_cmdline(*fragments: str) -> list[int]:
    """Processes whose command line holds every fragment (``postgres: … dbname``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if all(f in cmdline for f in fragments):
            found.append(int(entry.name))
    return found


class Sampler:
    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self._groups = groups
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        # Per pid: CPU seconds when the window opened (0 for later processes), latest.
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._seen: dict[str, set[int]] = {name: set() for name in groups}
        self._memory_peak: dict[str, int] = dict.fromkeys(groups, 0)
        self._started_ticks = 0.0
        self._wall = 0.0
        self._machine = (0, 0)

    def _sample(self) -> None:
        for name, pids in self._groups.items():
            current = [(pid, _stat(pid)) for pid in pids()]
            alive = [(pid, sample) for pid, sample in current if sample is not None]
            for pid, sample in alive:
                if pid not in self._first:
                    before = sample.started < self._started_ticks
                    self._first[pid] = sample.cpu_sec if before else 0.0
                self._last[pid] = sample.cpu_sec
                self._seen[name].add(pid)
            memory = (
                alive[0][1].rss if len(alive) == 1 else sum(sample.pss for _pid, sample in alive)
            )
            self._memory_peak[name] = max(self._memory_peak[name], memory)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_SEC):
            self._sample()

    def start(self) -> None:
        self._started_ticks = _uptime_ticks()
        self._wall = time.monotonic()
        self._machine = _machine_ticks()
        self._sample()
        self._thread.start()

    def stop(self) -> tuple[dict[str, Usage], float]:
        """``read()``, and no more sampling."""
        self._stop.set()
        self._thread.join()
        return self.read()

    def read(self) -> tuple[dict[str, Usage], float]:
        """Each group's usage since ``start()``, and the machine's (100 % a core, as for
        the processes: at most 100 % × the number of cores)."""
        self._sample()
        wall = time.monotonic() - self._wall
        busy, total = (
            now - then for now, then in zip(_machine_ticks(), self._machine, strict=True)
        )
        usage = {}
        for name, seen in self._seen.items():
            cpu = sum(self._last[p] - self._first[p] for p in seen)
            usage[name] = Usage(100 * cpu / wall, cpu, self._memory_peak[name], len(seen))
        return usage, 100 * (os.cpu_count() or 1) * busy / max(total, 1)
