"""Issue 8's figure: POST /v1/masking/calls with several API processes on PostgreSQL,
beside a bare FastAPI + asyncpg endpoint doing one INSERT, measured in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx

from bench.bare import SCHEMA
from bench.calls import hammer, server_env, unlimited_key
from bench.stats import summary_ms
from tests.support.databases import fresh_database
from tests.support.server import free_port, running_server

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _bare_server(dsn: str, workers: int) -> Iterator[str]:
    asyncio.run(_create_table(dsn))
    port = free_port()
    env = {**os.environ, "BARE_DSN": dsn, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "--factory", "bench.bare:create_app",
            "--port", str(port), "--workers", str(workers), "--loop", "uvloop",
            "--no-access-log", "--log-level", "warning",
        ],
        env=env,
        cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the bare endpoint did not come up")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _create_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()


def _maskline_rate(
    env: dict[str, str],
    tmp: Path,
    *,
    api_processes: int,
    stack: bool,
    clients: int,
    seconds: float,
) -> tuple[float, int, list[float]]:
    # An organisation per run: the parties repeat from one run to the next, and the
    # calls of the run without an engine stay live.
    key = unlimited_key(env, f"bench-{stack}", f"91809900000{int(stack) + 2}")
    with contextlib.ExitStack() as running:
        apis = [
            running.enter_context(running_server(env, tmp, extra_args=("--role", "api")))
            for _ in range(api_processes)
        ]
        for role in ("engine", "worker") if stack else ():
            running.enter_context(running_server(env, tmp, extra_args=("--role", role)))
        accepted, refused, latencies = asyncio.run(
            hammer([a.base_url for a in apis], key, clients=clients, seconds=seconds)
        )
    return accepted / seconds, refused, latencies


def post_vs_bare(*, api_processes: int = 2, clients: int = 32, seconds: float = 15.0) -> str:
    """Like for like first (API processes only, as the bare endpoint has nothing else to
    run), then with an engine and a worker dialling and reporting the accepted calls."""
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), kind="postgresql") as url:
        env = server_env(url, Path(tmp), MASKLINE_REDIS_URL="redis://127.0.0.1:6379/14")
        figures = {
            stack: _maskline_rate(
                env, Path(tmp), api_processes=api_processes, stack=stack,
                clients=clients, seconds=seconds,
            )
            for stack in (False, True)
        }  # fmt: skip
        with _bare_server(url, api_processes) as base:
            bare, bare_refused, bare_latencies = asyncio.run(
                hammer([base], "unused", clients=clients, seconds=seconds)
            )
    bare_rate = bare / seconds
    lines = [
        f"bare FastAPI + asyncpg, one INSERT, {api_processes} uvicorn workers: "
        f"{bare_rate:.0f}/s ({bare_refused} refused), latency {summary_ms(bare_latencies)}"
    ]
    for stack, (rate, refused, latencies) in figures.items():
        mode = "+ engine + worker" if stack else "alone"
        lines.append(
            f"POST /v1/masking/calls on postgresql, {api_processes} api processes {mode} "
            f"(Redis limits): {rate:.0f} accepted/s ({refused} refused), latency "
            f"{summary_ms(latencies)}; ratio to bare {rate / max(bare_rate, 1e-9):.2f}"
        )
    return "\n".join(lines) + f"\n({clients} clients, {seconds:.0f} s each, same run)"
