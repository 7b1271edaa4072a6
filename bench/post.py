"""Issue 14's table: POST /v1/masking/calls under wrk, beside the bare yardstick, in one run.

Four cases, one after the other on the same machine, each on a fresh database:

- bare: ``bench/bare.py`` (FastAPI + asyncpg, one INSERT) under uvicorn, 2 workers;
- maskline on PostgreSQL: 2 ``maskline serve --role api`` processes, Redis rate limits;
- the same plus an engine and a worker process, which dial every accepted call on the sim;
- maskline embedded on SQLite: one ``maskline serve`` process, engine inside.

Each case gets a short warm-up, then ``SECONDS`` of one wrk process (``CONNECTIONS``
connections on ``THREADS`` threads); with 2 API processes each wrk thread sends to one
of them. ``make bench-post`` prints the table; ``make bench`` prints it too.
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
from bench.setups import API_PROCESSES, embedded_sqlite, postgresql_apis
from tests.support.databases import fresh_database
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 32
THREADS = 2
SECONDS = 15.0
WARMUP_SEC = 3.0


@dataclass(frozen=True)
class Case:
    name: str
    run: WrkRun


def _measure(targets: list[str], key: str, database_url: str) -> WrkRun:
    """A warm-up (connection pools, statement caches), ``ANALYZE``, then the measured
    run; the two use different numbers, so no party of the warm-up is live in the run.

    A database that has been running has its planner statistics, which autovacuum
    refreshes (PostgreSQL: once a minute at most). A fresh one has none: the first
    statements are planned, and their prepared plans cached, for empty tables (a
    sequential scan of the leases on every POST, half the server's CPU), until the
    first autoanalyze, later than a 15 s run. ``ANALYZE`` after the warm-up measures
    the steady state, as a database that has been up for a minute is.
    """
    run_wrk(targets, key, block=0, connections=CONNECTIONS, threads=THREADS, seconds=WARMUP_SEC)
    asyncio.run(analyze(database_url))
    return run_wrk(
        targets, key, block=THREADS, connections=CONNECTIONS, threads=THREADS, seconds=SECONDS
    )


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


def bare_case() -> Case:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(Path(tmp), kind="postgresql") as url,
        bare_server(url, API_PROCESSES) as address,
    ):
        run = _measure([address], "unused", url)
    return Case(f"bare FastAPI + asyncpg, one INSERT, {API_PROCESSES} uvicorn workers", run)


def postgresql_case(*, stack: bool) -> Case:
    with tempfile.TemporaryDirectory() as tmp, postgresql_apis(Path(tmp), stack=stack) as running:
        run = _measure(running.addresses, running.key, running.database_url)
    extra = " + engine + worker" if stack else ""
    return Case(f"maskline, PostgreSQL, {API_PROCESSES} api processes{extra}", run)


def sqlite_case() -> Case:
    with tempfile.TemporaryDirectory() as tmp, embedded_sqlite(Path(tmp)) as running:
        run = _measure(running.addresses, running.key, running.database_url)
    return Case("maskline, SQLite, one embedded process (engine inside)", run)


def _others(run: WrkRun) -> str:
    others = run.other_than(201)
    return ", ".join(f"{n} × {what}" for what, n in others.items()) or "0"


def table(cases: list[Case]) -> str:
    bare = cases[0].run.rate()
    lines = [
        f"POST /v1/masking/calls under wrk: {CONNECTIONS} connections, {THREADS} threads, "
        f"{SECONDS:.0f} s each after a {WARMUP_SEC:.0f} s warm-up, same run",
        "",
        "| case | accepted/s | ratio to bare | p50 | p99 | not 201 |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in cases:
        run = case.run
        lines.append(
            f"| {case.name} | {run.rate():.0f} | {run.rate() / max(bare, 1e-9):.2f} "
            f"| {run.p50_sec * 1000:.1f} ms | {run.p99_sec * 1000:.1f} ms | {_others(run)} |"
        )
    return "\n".join(lines)


def post_table() -> str:
    return table(
        [bare_case(), postgresql_case(stack=False), postgresql_case(stack=True), sqlite_case()]
    )


if __name__ == "__main__":
    print(post_table(), flush=True)
