"""Issue 15's webhook figures: the fan-out rate of a backlog to a keep-alive receiver, the
same beside a receiver that answers in 2 s, and the delay from commit to POST.

- **Fan-out**: ``events`` independent events queued for one organisation whose endpoint
  is nginx answering 204 (``bench/nginx.py``), then the worker woken; the rate is the
  events over the time from the wake-up to the last first arrival in nginx's log.
- **Beside a slow or a dead receiver**: the same, for another organisation, while a
  third one's endpoint either answers every POST after ``SLOW_SEC`` (a server of this
  module; ``SLOW_BACKLOG`` events) or refuses every connection (nothing listens;
  ``DEAD_BACKLOG`` events). Those are queued first, so they are the longest due. The
  healthy organisation's rate there against its rate alone is the other receiver's cost
  to it. The three are measured in turn, ``ROUNDS`` times, so that the machine's drift
  (a shared VM's rate moves by a third from one minute to the next) falls on all
  three alike; after each, the other receiver's unfinished deliveries are failed and its
  attempts let finish.
- **Delay**: calls placed one at a time over the API; from the POST's answer (its
  commit) to the arrival of its ``call.initiated`` at a local receiver.
- **Delay at rate**: calls placed at ``RATE`` a second for ``RATE_SEC`` seconds, each
  POST sent at its own time whatever the others are doing (open loop, in process over
  ASGI), so that every call's five or six events are being delivered meanwhile; the
  same delay for each call's ``call.initiated``, and the rate of all deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvloop
from sqlalchemy import select, update

from bench.calls import SECRET
from bench.nginx import NginxReceiver, nginx_receiver
from bench.numbers import parties
from bench.stats import summary_ms
from maskline.app import create_app
from maskline.keys import service as keys
from maskline.kit.scope import owned_by
from maskline.numbers import service as numbers
from maskline.onboarding import service as onboarding
from maskline.orgs.service import OrgTerms
from maskline.runtime import Runtime
from maskline.settings import Settings
from maskline.webhooks import service as webhooks
from maskline.webhooks.models import CallEvent, WebhookDelivery
from maskline.webhooks.outbox import record_event
from tests.support.databases import fresh_database
from tests.support.receiver import Receiver, receiving
from tests.support.server import free_port

SLOW_SEC = 2.0
SLOW_BACKLOG = 2_000
DEAD_BACKLOG = 20_000
ROUNDS = 3
RATE = 100
RATE_SEC = 10
ENDS = ("call.completed", "call.failed", "call.no-answer")
# Events queued per write transaction.


class SlowReceiver:
    """An HTTP/1.1 keep-alive server on a thread of its own that answers every request
    with 204 after ``SLOW_SEC`` (the time is slept, not spent)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received = 0
        # Requests received and not yet answered.
        self.answering = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slow"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)
        )
        self._ready.set()
        self._loop.run_forever()
        # Stopped: the connections still held open are ended here, not left to the
        # collector ("Task was destroyed but it is pending!" for each at exit).
        server.close()
        serving = asyncio.all_tasks(self._loop)
        for task in serving:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*serving, return_exceptions=True))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled too, when the receiver stops: the connection ends with it.
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    await reader.readexactly(length)
                    self.received += 1
                    self.answering += 1
                    try:
                        await asyncio.sleep(SLOW_SEC)
                    finally:
                        self.answering -= 1
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                    await writer.drain()
            finally:
                writer.close()

    def __enter__(self) -> SlowReceiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def _org(
    runtime: Runtime, name: str, url: str, *, number: str | None = None
) -> tuple[str, str]:
    async with runtime.db.write() as session:
        now = runtime.clock.now()
        made = await onboarding.create_org(
            session,
            name,
            box=runtime.box,
            now=now,
            terms=OrgTerms(max_live_calls=100_000),
            opening_balance=10**9,
        )
        if number is not None:
            await numbers.add_numbers(session, [number], org_id=made.org.id, now=now)
        await webhooks.set_url(session, made.org.id, url, box=runtime.box, now=now)
        _key, api_key = await keys.create_key(session, made.org, now=now, rate_limit=10**6)
    return made.org.id, api_key


async def _queue(runtime: Runtime, org_id: str, count: int) -> None:
    """``count`` events for ``org_id``, in one transaction: none is visible, so none is
    delivered, before the clock starts (a worker sees other processes' commits, and
    delivers faster than events can be queued)."""
    async with runtime.db.write() as session:
        for n in range(count):
            await record_event(
                session,
                org_id=org_id,
                event="webhook.test",
                call_sid=None,
                sequence=0,
                data={"n": n},
                webhook_url=None,
                now=runtime.clock.now(),
            )


async def _drained(
    nginx: NginxReceiver, name: str, events: int, started: float
) -> tuple[float, float]:
    """The rate at which ``events`` first arrivals reached ``/hooks/<name>``, and this
    process's CPU time (all its threads) per delivery meanwhile, in ms: on a shared
    machine the rate is what the scheduler allowed, the CPU what a delivery costs."""
    cpu = time.process_time()
    deadline = time.monotonic() + 900
    while len(nginx.arrivals(name).first) < events:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: {len(nginx.arrivals(name).first)} of {events} arrived")
        await asyncio.sleep(0.1)
    last = max(nginx.arrivals(name).first.values())
    return events / (last - started), (time.process_time() - cpu) * 1000 / events


async def _run(
    url: str,
    data_dir: Path,
    nginx: NginxReceiver,
    receiver: Receiver,
    slow: SlowReceiver,
    *,
    events: int,
    calls: int,
) -> list[str]:
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
    lines = []
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        _, api_key = await _org(runtime, "delays", receiver.url, number="918099000003")

        lines += await _isolation(runtime, nginx, slow, events)

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
        lines.append(f"commit → POST delay, one call at a time: {summary_ms(delays)}")
        lines.append(await _delays_at_rate(app, runtime, nginx, counter))
    return lines


async def _isolation(
    runtime: Runtime, nginx: NginxReceiver, slow: SlowReceiver, events: int
) -> list[str]:
    """``ROUNDS`` rounds of: ``events`` to nginx alone, beside the slow receiver's
    backlog, beside a dead receiver's; each case's rate and CPU a delivery, and its
    rate against alone's, summed over the rounds."""
    dead = f"http://127.0.0.1:{free_port()}/dead"
    others = {"slow": (slow.url, SLOW_BACKLOG), "dead": (dead, DEAD_BACKLOG)}
    rates: dict[str, list[float]] = {case: [] for case in ("alone", "slow", "dead")}
    cpus: dict[str, list[float]] = {case: [] for case in rates}
    for round_ in range(ROUNDS):
        for case in rates:
            name = f"{case}-{round_}"
            org, _ = await _org(runtime, name, nginx.url(name))
            other = None
            if case in others:
                url, backlog = others[case]
                other, _ = await _org(runtime, f"{case}-other-{round_}", url)
                # The other receiver's events first: they are the longest due.
                await _queue(runtime, other, backlog)
            await _queue(runtime, org, events)
            started = time.time()
            runtime.wake_worker()
            rate, cpu = await _drained(nginx, name, events, started)
            rates[case].append(rate)
            cpus[case].append(cpu)
            if other is not None:
                await _give_up(runtime, other, slow)
    lines = []
    alone = sum(rates["alone"])
    for case, rounds in rates.items():
        what = {
            "alone": f"fan-out of {events} events to nginx (keep-alive, 204)",
            "slow": f"the same beside a receiver answering in {SLOW_SEC:.0f} s "
            f"({SLOW_BACKLOG} due first)",
            "dead": f"the same beside a receiver refusing connections ({DEAD_BACKLOG} due first)",
        }[case]
        cpu = sum(cpus[case]) / len(cpus[case])
        each = ", ".join(f"{rate:.0f}" for rate in rounds)
        against = "" if case == "alone" else f", {sum(rounds) / alone:.0%} of alone"
        lines.append(
            f"{what}: {sum(rounds) / len(rounds):.0f}/s over {ROUNDS} rounds ({each}){against}; "
            f"{cpu:.2f} ms of CPU a delivery (a core's worth: {1000 / cpu:.0f}/s)"
        )
    connections = sum(nginx.arrivals(f"{c}-{r}").connections for c in rates for r in range(ROUNDS))
    lines.append(f"nginx: {connections} connections, {nginx.statuses['204']} answers 204")
    return lines


async def _give_up(runtime: Runtime, org_id: str, slow: SlowReceiver) -> None:
    """End the other receiver's part: its unfinished deliveries failed, and the attempts
    already under way (the slow one's, a lane's worth and its backlog) let finish."""
    async with runtime.db.write() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(owned_by(WebhookDelivery, org_id), WebhookDelivery.status == "pending")
            .values(status="failed", next_attempt_at=None)
        )
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < SLOW_SEC / 2:
        await asyncio.sleep(0.1)
        if slow.answering:
            quiet_since = time.monotonic()


async def _delays_at_rate(
    app: Any, runtime: Runtime, nginx: NginxReceiver, counter: Iterator[int]
) -> str:
    """``RATE`` calls a second for ``RATE_SEC`` s to an organisation whose endpoint is
    nginx; each call's commit → its ``call.initiated``'s arrival (matched by
    ``webhook-id``, the event's id), and the rate of all its calls' deliveries."""
    org_id, api_key = await _org(runtime, "rate", nginx.url("rate"), number="918099000004")
    committed: dict[str, float] = {}
    late: list[float] = []
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

        async def place(due: float, a: str, b: str) -> None:
            await asyncio.sleep(max(0.0, due - time.time()))
            late.append(time.time() - due)
            response = await http.post(
                "/v1/masking/calls",
                headers=headers,
                json={"party_a": a, "party_b": b, "record": False},
            )
            done = time.time()
            assert response.status_code == 201, response.text
            committed[response.json()["data"]["call_sid"]] = done

        start = time.time() + 0.5
        total = RATE * RATE_SEC
        async with asyncio.TaskGroup() as group:
            for i in range(total):
                group.create_task(place(start + i / RATE, str(next(counter)), str(next(counter))))
    deadline = time.monotonic() + 300
    while True:
        async with runtime.db.read() as session:
            events = (
                await session.execute(
                    select(CallEvent.id, CallEvent.call_sid, CallEvent.event).where(
                        owned_by(CallEvent, org_id)
                    )
                )
            ).all()
        arrived = nginx.arrivals("rate").first
        ends = [e for e in events if e.event in ENDS]
        if len(ends) == total and all(e.id in arrived for e in events):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(ends)} of {total} calls ended, {len(arrived)} arrivals")
        await asyncio.sleep(0.5)
    delays = [arrived[e.id] - committed[e.call_sid] for e in events if e.event == "call.initiated"]
    times = [arrived[e.id] for e in events]
    span = max(times) - min(times)
    return (
        f"commit → POST delay at {RATE} calls/s for {RATE_SEC} s (nginx): {summary_ms(delays)}; "
        f"{len(times)} deliveries in {span:.1f} s ({len(times) / span:.0f}/s); "
        f"POSTs sent late by p99 {sorted(late)[int(len(late) * 0.99) - 1] * 1000:.0f} ms"
    )


@contextlib.contextmanager
def _receivers(tmp: Path) -> Iterator[tuple[NginxReceiver, Receiver, SlowReceiver]]:
    with nginx_receiver(tmp / "nginx") as nginx, receiving() as receiver, SlowReceiver() as slow:
        yield nginx, receiver, slow


def webhooks_bench(kind: str, *, events: int = 20_000, calls: int = 100) -> str:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(Path(tmp), kind=kind) as url,
        _receivers(Path(tmp)) as (nginx, receiver, slow),
        # On uvloop, as `maskline serve` runs.
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        lines = runner.run(
            _run(url, Path(tmp) / "data", nginx, receiver, slow, events=events, calls=calls)
        )
    return "\n".join(f"webhooks on {kind}: {line}" for line in lines)


if __name__ == "__main__":
    import sys

    kinds = [a for a in sys.argv[1:] if not a.isdigit()] or ["postgresql", "sqlite"]
    counts = [int(a) for a in sys.argv[1:] if a.isdigit()]
    for kind in kinds:
        print(webhooks_bench(kind, events=counts[0] if counts else 20_000), flush=True)
