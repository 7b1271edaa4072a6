"""Issue 6's figure: call-logs latency with 1,000,000 calls in one organisation."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from bench.calls import SECRET
from bench.stats import summary_ms
from maskline.app import create_app
from maskline.calls.models import Call
from maskline.keys import service as keys
from maskline.onboarding import service as onboarding
from maskline.settings import Settings
from tests.support.databases import fresh_database

STATUSES = ["completed"] * 6 + ["failed"] * 2 + ["no-answer"] * 2
BATCH = 20_000


def _rows(org_id: str, count: int, start: datetime, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        created = start + timedelta(seconds=n * 2)
        status = rng.choice(STATUSES)
        bridged = status == "completed"
        rows.append(
            {
                "call_sid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "org_id": org_id,
                "carrier": "sim",
                "party_a": f"98{rng.randrange(10**8):08d}",
                "party_b": f"97{rng.randrange(10**8):08d}",
                "masked_number": "917969002801",
                "status": status,
                "hangup_cause": "NORMAL_CLEARING" if bridged else "USER_BUSY",
                "hangup_by": "party_a",
                "ring_timeout_sec": 30,
                "record": False,
                "created_at": created,
                "started_at": created,
                "ended_at": created + timedelta(seconds=60),
                "answered_at": created + timedelta(seconds=5) if bridged else None,
                "bridged_at": created + timedelta(seconds=8) if bridged else None,
                "rate_paise": 150,
                "pulse_sec": 60,
                "pulse_price_paise": 150,
                "hold_paise": 0,
                "granted_pulses": 1 if bridged else 0,
                "billed_pulses": 1 if bridged else 0,
                "price_paise": 150 if bridged else 0,
                "talk_sec": 52 if bridged else 0,
                "recording_status": "none",
                "event_seq": 2,
            }
        )
    return rows


async def _measure(url: str, data_dir: Path, count: int, samples: int) -> list[str]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=url, secret_key=SECRET, data_dir=data_dir, log_level="WARNING"
    )
    app = create_app(settings, announce=lambda _c: None, role="api")
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        async with runtime.db.write() as session:
            made = await onboarding.create_org(
                session, "logs", box=runtime.box, now=runtime.clock.now()
            )
            _key, api_key = await keys.create_key(
                session, made.org, now=runtime.clock.now(), rate_limit=10**6
            )
        start = datetime(2026, 1, 1, tzinfo=UTC)
        seeded = time.perf_counter()
        rng = random.Random(7)
        for offset in range(0, count, BATCH):
            rows = _rows(
                made.org.id, min(BATCH, count - offset), start + timedelta(seconds=offset * 2), rng
            )
            async with runtime.db.write() as session:
                await session.execute(insert(Call), rows)
        seed_sec = time.perf_counter() - seeded
        if runtime.db.engine.dialect.name == "postgresql":
            async with runtime.db.engine.connect() as conn:
                await conn.exec_driver_sql("ANALYZE calls")
        party = await _first_party(app, api_key)
        queries = {
            "page 1": {"per_page": 20},
            "page 2,500 (offset 49,980)": {"per_page": 20, "page": 2500},
            "status=completed, a date range": {
                "status": "completed",
                "start_date": "2026-01-10",
                "end_date": "2026-01-12",
            },
            "party=…": {"party": party},
        }
        lines = [f"seeded {count:,} calls in {seed_sec:.0f} s"]
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for name, params in queries.items():
                timings = []
                for _ in range(samples):
                    began = time.perf_counter()
                    response = await http.get(
                        "/v1/masking/call-logs", headers=headers, params=params
                    )
                    timings.append(time.perf_counter() - began)
                    assert response.status_code == 200, response.text
                lines.append(f"  {name}: {summary_ms(timings)}")
        return lines


async def _first_party(app: Any, api_key: str) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        response = await http.get(
            "/v1/masking/call-logs",
            headers={"Authorization": f"Bearer {api_key}"},
            params={"per_page": 1},
        )
        return str(response.json()["data"][0]["party_a"])


def call_logs_latency(kind: str, *, count: int = 1_000_000, samples: int = 30) -> str:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), kind=kind) as url:
        lines = asyncio.run(_measure(url, Path(tmp) / "data", count, samples))
    return f"call-logs on {kind}: " + "\n".join(lines)
