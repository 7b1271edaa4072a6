"""Issue 15's figures: call-logs and stats latency over HTTP with 1,000,000 calls in one
organisation, seeded by ``maskline calls seed``.

``maskline serve`` (embedded on SQLite; ``--role api`` on PostgreSQL) on a fresh
database; the calls are seeded over 30 days, the planner's statistics gathered (a
database that has been up a while), then each query is asked ``samples`` times in a
row over one keep-alive connection.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text

from bench.calls import server_env
from bench.stats import summary_ms
from maskline.calls.models import Call
from maskline.calls.repository import CALLS, call_logs_filters
from maskline.kit.daterange import DateRange
from maskline.kit.db import Database
from maskline.kit.india import ist_date
from maskline.kit.pagination import encode_cursor
from tests.support.cli import cli_env
from tests.support.databases import fresh_database
from tests.support.server import MASKLINE, running_server

ORG = "logs"


def _cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [str(MASKLINE), *args], env=cli_env(env), cwd=cwd, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"maskline {' '.join(args)}: {done.stderr}")
    return done.stdout


async def _prepare(url: str, depth: int) -> tuple[str, str]:
    """Planner statistics; a cursor ``depth`` rows deep; a customer with calls."""
    db = Database(url, pool_size=1)
    try:
        async with db.engine.connect() as conn:
            # PostgreSQL: the visibility map too (autovacuum's work on a live database),
            # so that index-only scans read no heap.
            vacuum = "VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE"
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(vacuum))
        async with db.read() as session:
            deep = (
                await session.execute(
                    select(Call)
                    .order_by(Call.created_at.desc(), Call.id.desc())
                    .offset(depth - 1)
                    .limit(1)
                )
            ).scalar_one()
            newest = (
                await session.execute(select(Call).order_by(Call.created_at.desc()).limit(1))
            ).scalar_one()
        filters = call_logs_filters(dates=DateRange(None, None), statuses=None, party=None)
        return encode_cursor(CALLS, filters, deep), newest.party_b
    finally:
        await db.dispose()


def _queries(cursor: str, depth: int, party: str) -> dict[tuple[str, str], dict[str, Any]]:
    today = ist_date(datetime.now(UTC))
    week = {
        "start_date": (today - timedelta(days=14)).isoformat(),
        "end_date": (today - timedelta(days=8)).isoformat(),
    }
    logs = "/v1/masking/call-logs"
    return {
        (logs, "page 1"): {},
        (logs, f"a cursor {depth:,} rows deep"): {"cursor": cursor},
        (logs, "page 200"): {"page": 200},
        (logs, "status=no-answer"): {"status": "no-answer"},
        (logs, "status=failed,no-answer"): {"status": "failed,no-answer"},
        (logs, "a 7-day date range"): week,
        (logs, "status=completed + a 7-day range"): {"status": "completed", **week},
        (logs, "party (either side)"): {"party": party},
        ("/v1/masking/stats", "stats, the last 30 days"): {},
    }


async def _measure(
    base_url: str, key: str, queries: dict[Any, dict[str, Any]], n: int
) -> list[str]:
    lines = []
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        for (path, name), params in queries.items():
            await http.get(path, params=params)  # warm
            timings = []
            for _ in range(n):
                began = time.perf_counter()
                response = await http.get(path, params=params)
                timings.append(time.perf_counter() - began)
                assert response.status_code == 200, response.text
            meta = response.json().get("meta")
            total = ""
            if meta is not None:
                total = f", total {meta['total']:,}{'+' if meta['total_capped'] else ''}"
            lines.append(f"  {name}: {summary_ms(timings)}{total}")
    return lines


def call_logs_latency(kind: str, *, count: int = 1_000_000, samples: int = 100) -> str:
    with tempfile.TemporaryDirectory() as tmp_dir, fresh_database(Path(tmp_dir), kind=kind) as url:
        tmp = Path(tmp_dir)
        env = server_env(url, tmp)
        _cli(env, tmp, "migrate")
        _cli(env, tmp, "org", "create", ORG, "--sandbox")
        key = _cli(env, tmp, "key", "create", "--org", ORG, "--rate-limit", "1000000", "--json")
        api_key = str(json.loads(key)["api_key"])
        began = time.perf_counter()
        _cli(env, tmp, "calls", "seed", "--org", ORG, "--count", str(count), "--seed", "15")
        seed_sec = time.perf_counter() - began
        depth = count * 9 // 10
        cursor, party = asyncio.run(_prepare(url, depth))
        role = ("--role", "api") if kind == "postgresql" else ()
        with running_server(env, tmp, extra_args=role, installed=True) as server:
            lines = asyncio.run(
                _measure(server.base_url, api_key, _queries(cursor, depth, party), samples)
            )
    head = f"call-logs and stats on {kind}, {count:,} calls seeded in {seed_sec:.1f} s"
    return head + "\n" + "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(call_logs_latency(sys.argv[1], count=int(sys.argv[2]) if len(sys.argv) > 2 else 10**6))
