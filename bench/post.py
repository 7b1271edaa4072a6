"""Issue 14's table: POST /v1/masking/calls under wrk, beside the bare yardstick, in one run.

Four set-ups, all started first, each on a fresh database:

- bare: ``bench/bare.py`` (FastAPI + asyncpg, one INSERT) under uvicorn, 2 workers;
- maskline on PostgreSQL: 2 ``maskline serve --role api`` processes, Redis rate limits;
- the same plus an engine and a worker process, which dial every accepted call on the sim;
- maskline embedded on SQLite: one ``maskline serve`` process, engine inside.

Then ``ROUNDS`` rounds, each measuring the four in turn: ``SECONDS`` of one wrk process
(``CONNECTIONS`` connections on ``THREADS`` threads; with 2 API processes each wrk
thread sends to one of them), after waiting for the machine to go quiet (the engines
ending the calls of the run before: the sim's calls ring 1 s a leg and talk 3 s, as in
``bench/e2e.py``). A set-up's ratio is its rate over the bare
endpoint's in the same round; the table gives the median round's. This VM's speed
drifts by a third within minutes: rounds side by side spread that drift over every
set-up, where one pass of each compared minutes apart. Each set-up gets a short warm-up
and ``ANALYZE`` once, before the first round. ``make bench-post`` prints the table;
``make bench`` prints it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from bench.bare import SCHEMA
from bench.loadgen import WrkRun, run_wrk
from bench.procstat import busy_percent
from bench.setups import API_PROCESSES, embedded_sqlite, postgresql_apis
from tests.support.databases import fresh_database
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 32
THREADS = 2
SECONDS = 15.0
WARMUP_SEC = 3.0
ROUNDS = 3
# Before each run, the machine must have been this idle over QUIET_SAMPLE_SEC (100 % a
# core): the engines have ended the calls of the run before …
QUIET_PERCENT = 10.0
QUIET_SAMPLE_SEC = 2.0
# … or this long must have passed (the run goes ahead, and its line says so).
QUIET_WAIT_SEC = 90.0
# The sim's calls as bench.e2e places them: each over in about 5 s, so that the engines
# have ended a run's calls before the next run starts (at the default 20 s of talk they
# kept a core a quarter busy into the next set-up's run).
RING, TALK = "1", "3"
# How long the machine's use is read with every set-up up and idle (the table says it).
IDLE_SAMPLE_SEC = 5.0


@dataclass(frozen=True)
class Target:
    """A set-up under load: its name, its API processes' ``host:port``, its key, its
    database."""

    name: str
    addresses: list[str]
    key: str
    database_url: str


@dataclass(frozen=True)
class Case:
    name: str
    runs: list[WrkRun]


def _warm(target: Target) -> None:
    """A warm-up (connection pools, statement caches), then ``ANALYZE``.

    A database that has been running has its planner statistics, which autovacuum
    refreshes (PostgreSQL: once a minute at most). A fresh one has none: the first
    statements are planned, and their prepared plans cached, for empty tables (a
    sequential scan of the leases on every POST, half the server's CPU), until the
    first autoanalyze, later than a 15 s run. ``ANALYZE`` after the warm-up measures
    the steady state, as a database that has been up for a minute is.
    """
    run_wrk(
        target.addresses,
        target.key,
        block=0,
        connections=CONNECTIONS,
        threads=THREADS,
        seconds=WARMUP_SEC,
    )
    asyncio.run(analyze(target.database_url))


def _wait_quiet() -> bool:
    """Wait until the machine is quiet (``QUIET_PERCENT``); False when it never was."""
    deadline = time.monotonic() + QUIET_WAIT_SEC
    while time.monotonic() < deadline:
        if busy_percent(QUIET_SAMPLE_SEC) < QUIET_PERCENT:
            return True
    return False


def measure_rounds(targets: list[Target], rounds: int = ROUNDS) -> list[Case]:
    """Each target warmed once, then ``rounds`` rounds of one run each, in turn."""
    for target in targets:
        _wait_quiet()
        _warm(target)
    runs: dict[str, list[WrkRun]] = {target.name: [] for target in targets}
    for n in range(rounds):
        for target in targets:
            if not _wait_quiet():
                print(f"round {n + 1}, {target.name}: the machine was not quiet", flush=True)
            # Each round its own numbers: no party of an earlier round is still live.
            runs[target.name].append(
                run_wrk(
                    target.addresses,
                    target.key,
                    block=THREADS * (n + 1),
                    connections=CONNECTIONS,
                    threads=THREADS,
                    seconds=SECONDS,
                )
            )
    return [Case(target.name, runs[target.name]) for target in targets]


@contextlib.contextmanager
def bare_server(dsn: str, workers: int) -> Iterator[str]:
    """``bench/bare.py`` under uvicorn with ``workers`` processes; its ``host:port``."""
    asyncio.run(_create_table(dsn))
    port = free_port()
    env = {**os.environ, "BARE_DSN": dsn, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "--factory", "bench.bare:create_app",
            "--port", str(port), "--workers", str(workers), "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning",
        ],
        env=env,
        cwd=ROOT,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://{address}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the bare endpoint did not come up")
            time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


async def analyze(database_url: str) -> None:
    """``ANALYZE`` the whole database (PostgreSQL or SQLite, as a SQLAlchemy URL)."""
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[1]
        await asyncio.to_thread(_analyze_sqlite, path)
        return
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def _analyze_sqlite(path: str) -> None:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("ANALYZE")
        conn.commit()


async def _create_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()


def _running(stack: contextlib.ExitStack, tmp: Path) -> list[Target]:
    """The four set-ups, started on ``stack``."""
    bare_dir, pg_dir, stack_dir, sqlite_dir = (tmp / name for name in ("b", "p", "s", "q"))
    for directory in (bare_dir, pg_dir, stack_dir, sqlite_dir):
        directory.mkdir()
    bare_url = stack.enter_context(fresh_database(bare_dir, kind="postgresql"))
    bare_address = stack.enter_context(bare_server(bare_url, API_PROCESSES))
    apis = stack.enter_context(
        postgresql_apis(pg_dir, stack=False, MASKLINE_SIM_RING_SEC=RING, MASKLINE_SIM_TALK_SEC=TALK)
    )
    full = stack.enter_context(
        postgresql_apis(
            stack_dir, stack=True, MASKLINE_SIM_RING_SEC=RING, MASKLINE_SIM_TALK_SEC=TALK
        )
    )
    embedded = stack.enter_context(
        embedded_sqlite(sqlite_dir, MASKLINE_SIM_RING_SEC=RING, MASKLINE_SIM_TALK_SEC=TALK)
    )

    names = [
        f"maskline, PostgreSQL, {API_PROCESSES} api processes",
        f"maskline, PostgreSQL, {API_PROCESSES} api processes + engine + worker",
        "maskline, SQLite, one embedded process (engine inside)",
    ]
    return [
        Target(
            f"bare FastAPI + asyncpg, one INSERT, {API_PROCESSES} uvicorn workers",
            [bare_address],
            "unused",
            bare_url,
        ),
        *(
            Target(name, running.addresses, running.key, running.database_url)
            for name, running in zip(names, (apis, full, embedded), strict=True)
        ),
    ]


def _others(run: WrkRun) -> str:
    others = run.other_than(201)
    return ", ".join(f"{n} × {what}" for what, n in others.items()) or "0"


def table(cases: list[Case], *, idle_percent: float) -> str:
    """Per set-up: the median round's run (by its ratio to the bare endpoint's run of
    the same round), and every round's ratio."""
    bare = cases[0].runs
    rounds = len(bare)
    lines = [
        f"POST /v1/masking/calls under wrk: {CONNECTIONS} connections, {THREADS} threads, "
        f"{SECONDS:.0f} s a run, {rounds} rounds of the four set-ups in turn, same run; "
        f"the machine busy {idle_percent:.0f}% (100% a core) with all four up and idle",
        "",
        "| case | accepted/s | ratio to bare | each round's ratio | p50 | p99 | not 201 |",
        "| --- | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for case in cases:
        ratios = [
            run.rate() / max(yardstick.rate(), 1e-9)
            for run, yardstick in zip(case.runs, bare, strict=True)
        ]
        median = sorted(range(rounds), key=lambda n: ratios[n])[rounds // 2]
        run = case.runs[median]
        lines.append(
            f"| {case.name} | {run.rate():.0f} | {ratios[median]:.2f} "
            f"| {', '.join(f'{r:.2f}' for r in ratios)} "
            f"| {run.p50_sec * 1000:.1f} ms | {run.p99_sec * 1000:.1f} ms | {_others(run)} |"
        )
    return "\n".join(lines)


def post_table(rounds: int = ROUNDS) -> str:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        targets = _running(stack, Path(tmp))
        cases = measure_rounds(targets, rounds)
        _wait_quiet()
        return table(cases, idle_percent=busy_percent(IDLE_SAMPLE_SEC))


if __name__ == "__main__":
    print(post_table(), flush=True)
