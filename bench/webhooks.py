"""Issue 5's figures: webhook deliveries a second, and the delay from commit to POST."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from bench.calls import SECRET
from bench.numbers import parties
from bench.stats import summary_ms
from maskline.app import create_app
from maskline.keys import service as keys
from maskline.numbers import service as numbers
from maskline.onboarding import service as onboarding
from maskline.orgs.service import OrgTerms
from maskline.settings import Settings
from maskline.webhooks import service as webhooks
from maskline.webhooks.outbox import record_event
from tests.support.databases import fresh_database
from tests.support.receiver import Receiver, receiving


async def _run(url: str, data_dir: Path, receiver: Receiver, *, events: int, calls: int) -> str:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        secret_key=SECRET,
        data_dir=data_dir,
        sim_ring_sec=0.2,
        sim_talk_sec=0.5,
        allow_private_webhooks=True,
        log_level="WARNING",
    )
    app = create_app(settings, announce=lambda _c: None)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        async with runtime.db.write() as session:
            now = runtime.clock.now()
            made = await onboarding.create_org(
                session,
                "hooks",
                box=runtime.box,
                now=now,
                terms=OrgTerms(max_live_calls=100_000),
                opening_balance=10**9,
            )
            await numbers.add_numbers(session, ["918099000003"], org_id=made.org.id, now=now)
            await webhooks.set_url(session, made.org.id, receiver.url, box=runtime.box, now=now)
            _key, api_key = await keys.create_key(session, made.org, now=now, rate_limit=10**6)

        # Throughput: a backlog of independent events, drained by the worker.
        async with runtime.db.write() as session:
            for n in range(events):
                await record_event(
                    session,
                    org_id=made.org.id,
                    event="webhook.test",
                    call_sid=None,
                    sequence=0,
                    data={"n": n},
                    webhook_url=None,
                    now=runtime.clock.now(),
                )
        started = time.perf_counter()
        runtime.wake_worker()
        await asyncio.to_thread(receiver.wait, lambda rs: len(rs) >= events, within=600)
        rate = events / (time.perf_counter() - started)

        # Delay: the POST that created call.initiated has committed when it answers.
        delays: list[float] = []
        counter = parties()
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for _ in range(calls):
                response = await http.post(
                    "/v1/masking/calls",
                    headers=headers,
                    json={
                        "party_a": str(next(counter)),
                        "party_b": str(next(counter)),
                        "record": False,
                    },
                )
                committed = time.perf_counter()
                sid = response.json()["data"]["call_sid"]
                arrivals = await asyncio.to_thread(
                    receiver.wait,
                    lambda rs, sid=sid: any(r.json.get("call_sid") == sid for r in rs),
                    within=60,
                )
                first = next(r for r in arrivals if r.json.get("call_sid") == sid)
                delays.append(first.at - committed)
        return (
            f"{rate:.0f} deliveries/s to a local receiver ({events} events); "
            f"commit → POST delay {summary_ms(delays)}"
        )


def webhooks_bench(kind: str, *, events: int = 2000, calls: int = 200) -> str:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(Path(tmp), kind=kind) as url,
        receiving() as receiver,
    ):
        line = asyncio.run(_run(url, Path(tmp) / "data", receiver, events=events, calls=calls))
    return f"webhooks on {kind}: {line}"
