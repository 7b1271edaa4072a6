"""Issue 4's figure, the engine's connect latency; and what the other benchmarks share:
the parties, a server's environment, an organisation no limit gets in the way of."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.numbers import parties
from bench.stats import summary_ms
from maskline.app import create_app
from maskline.keys import service as keys
from maskline.kit.clock import ScaledClock
from maskline.numbers import service as numbers
from maskline.onboarding import service as onboarding
from maskline.orgs.service import OrgTerms
from maskline.runtime import Runtime
from maskline.settings import Settings
from tests.support.databases import fresh_database

MASKLINE = Path(sys.executable).parent / "maskline"
SECRET = "bench-secret-key-for-a-throwaway-database"  # noqa: S105 - a throwaway key for a throwaway database


def _cli(env: dict[str, str], *args: str) -> dict[str, object]:
    done = subprocess.run(
        [str(MASKLINE), *args, "--json"], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"maskline {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def server_env(database_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``maskline serve`` process under benchmark."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MASKLINE_")},
        "MASKLINE_DATABASE_URL": database_url,
        "MASKLINE_SECRET_KEY": SECRET,
        "MASKLINE_DATA_DIR": str(tmp / "data"),
        "MASKLINE_LOG_LEVEL": "WARNING",
        **extra,
    }


def unlimited_key(
    env: dict[str, str],
    org: str = "bench",
    *,
    numbers: tuple[str, ...] = ("918099000001",),
    webhook_url: str | None = None,
) -> str:
    """An organisation ``org`` (made with the CLI) that no limit gets in the way of, with
    ``numbers`` as its masked numbers and, if given, its webhook endpoint; its API key."""
    _cli(env, "org", "create", org, "--balance", "10000000", "--max-live-calls", "1000000")
    _cli(env, "numbers", "add", *numbers, "--org", org)
    if webhook_url is not None:
        _cli(env, "webhook", "set", "--org", org, "--url", webhook_url)
    return str(_cli(env, "key", "create", "--org", org, "--rate-limit", "1000000")["api_key"])


async def unlimited_org(runtime: Runtime, name: str, pool: list[str]) -> str:
    """An organisation no limit gets in the way of, with ``pool`` numbers; its API key."""
    async with runtime.db.write() as session:
        made = await onboarding.create_org(
            session,
            name,
            box=runtime.box,
            now=runtime.clock.now(),
            terms=OrgTerms(max_live_calls=100_000),
            opening_balance=10**9,
        )
        await numbers.add_numbers(session, pool, org_id=made.org.id, now=runtime.clock.now())
        _key, api_key = await keys.create_key(
            session, made.org, now=runtime.clock.now(), rate_limit=1_000_000
        )
    return api_key


async def _connect_latency(url: str, data_dir: Path, calls: int) -> list[float]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        secret_key=SECRET,
        data_dir=data_dir,
        sim_ring_sec=2,
        sim_talk_sec=5,
        log_level="WARNING",
    )
    app = create_app(settings, clock=ScaledClock(20), announce=lambda _c: None)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        api_key = await unlimited_org(runtime, "latency", ["918099000002"])
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {api_key}"}
        counter = parties()
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for _ in range(calls):
                a, b = next(counter), next(counter)
                response = await http.post(
                    "/v1/masking/calls",
                    headers=headers,
                    json={"party_a": str(a), "party_b": str(b), "record": False},
                )
                assert response.status_code == 201, response.text
                await asyncio.sleep(0.005)  # about 200 calls a second, spread out
            engine = runtime.engine
            deadline = time.monotonic() + 120
            while len(engine.connect_latencies) < calls and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            return list(engine.connect_latencies)


def connect_latency(kind: str, *, calls: int = 1000) -> str:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), kind=kind) as url:
        values = asyncio.run(_connect_latency(url, Path(tmp) / "data", calls))
    return f"engine connect latency (A answered → B dial issued) on {kind}: {summary_ms(values)}"
