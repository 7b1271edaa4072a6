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


def post_vs_bare(*, api_processes: int = 2, clients: int = 32, seconds: float = 15.0) -> str:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), kind="postgresql") as url:
        env = server_env(url, Path(tmp), MASKLINE_REDIS_URL="redis://127.0.0.1:6379/14")
        key = unlimited_key(env)
        with contextlib.ExitStack() as stack:
            apis = [
                stack.enter_context(running_server(env, Path(tmp), extra_args=("--role", "api")))
                for _ in range(api_processes)
            ]
            for role in ("engine", "worker"):
                stack.enter_context(running_server(env, Path(tmp), extra_args=("--role", role)))
            ours, refused, latencies = asyncio.run(
                hammer([a.base_url for a in apis], key, clients=clients, seconds=seconds)
            )
        with _bare_server(url, api_processes) as base:
            bare, bare_refused, bare_latencies = asyncio.run(
                hammer([base], key, clients=clients, seconds=seconds)
            )
    return (
        f"POST /v1/masking/calls on postgresql, {api_processes} api processes + engine + worker "
        f"(Redis limits): {ours / seconds:.0f} accepted/s ({refused} refused), latency "
        f"{summary_ms(latencies)}; bare FastAPI + asyncpg one INSERT, {api_processes} uvicorn "
        f"workers: {bare / seconds:.0f}/s ({bare_refused} refused), latency "
        f"{summary_ms(bare_latencies)}; ratio maskline/bare {ours / max(bare, 1):.2f} "
        f"({clients} clients, {seconds:.0f} s each)"
    )
