"""Issue 14's end-to-end probe: the highest call rate maskline holds, from the POST to the
last webhook, for the production roles on PostgreSQL and for the embedded process.

For each set-up (``bench/setups.py``: 2 api processes with Redis limits + an engine + a
worker on PostgreSQL; one ``maskline serve`` on SQLite), with the sim network set to ring
``RING_SEC`` on each leg and talk ``TALK_SEC``, and a real receiver (``bench/nginx.py``,
nginx answering 204) as every organisation's webhook endpoint:

1. a short warm-up (pools, statement caches), drained;
2. rising fixed rates, ``STEP_SEC`` each, placed open-loop (``bench/openloop.py``), each
   rate by an organisation of its own (its own key, masked numbers and webhook path, so
   that the database and nginx's log tell each rate's calls and webhooks apart), each POST
   a new pair of parties; after the load stops, the probe waits for every call to end and
   every stored event to reach nginx, then judges the rate, and stops at the first that
   fails;
3. the best rate that held, once more for ``HOLD_SEC`` on a fresh start of the same set-up.

A rate holds (issue 14's rule) when at least ``ACCEPTED_MIN`` of the POSTs sent are
answered 201, the POST's p99 (counted from the moment each request was due) is under
``POST_P99_MAX_MS``, every call placed ends (``completed``: the sim's ordinary numbers
answer) and every event the database holds for the rate's calls arrives at nginx, all of
it within ``DRAIN_LIMIT_SEC`` after the last POST was due. The sender must also have kept
its own schedule (lag p99 under ``SENDER_LAG_MAX_MS``), or the run says nothing.

``make bench-e2e`` (``python -m bench.e2e [postgresql] [sqlite] [--rates 5,10,…]
[--seconds 30] [--hold 60] [--record] [--profile]``) prints a table per set-up: what each
rate did, then the CPU and peak RSS of each process over the load. With ``--profile``
the first rate that failed runs once more on the fresh start, with py-spy on the busiest
maskline process (``bench/post_profile.py`` sums its stacks by area) and, on PostgreSQL,
``pg_stat_activity`` sampled: where the time goes where it breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import itertools
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import ColumnElement, func, select

from bench.calls import unlimited_key
from bench.nginx import NginxReceiver, nginx_receiver
from bench.numbers import masked_numbers
from bench.openloop import Outcome, finish, start_open_loop
from bench.post_profile import ConnectionStates, py_spy_record, read_collapsed, summary
from bench.procstat import Sampler, Usage, children, pids_with_cmdline
from bench.setups import Running, embedded_sqlite, postgresql_apis
from bench.stats import percentile
from maskline.calls.models import LIVE_STATUSES, Call
from maskline.kit.db import Database
from maskline.orgs.models import Organisation
from maskline.webhooks.models import CallEvent, WebhookDelivery
from tests.support.waits import eventually, eventually_value

RING_SEC = 1
TALK_SEC = 3
RATES = (2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 35.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0)
STEP_SEC = 30.0
HOLD_SEC = 60.0
WARMUP_RATE = 5.0
WARMUP_SEC = 5.0
ACCEPTED_MIN = 0.999
POST_P99_MAX_MS = 250.0
# A call lives about RING_SEC × 2 + TALK_SEC = 5 s: the rest is the margin for the last
# calls' transitions and webhooks (the worker's first retry comes 5 s after a failure).
DRAIN_LIMIT_SEC = 15.0
# How long the probe watches a rate that has not drained, to say how far behind it was.
DRAIN_WATCH_SEC = 90.0
SENDER_LAG_MAX_MS = 50.0
# The organisation's own masked numbers. Every call has new parties, so one number would
# do (a number is free for a call when no live call of either party uses it); a few let
# the least-recently-used choice spread the calls as it would in production.
MASKED_NUMBERS = 10
POLL_SEC = 0.5
PROFILE_SEC = 20

SERVER_ENV = {
    "MASKLINE_SIM_RING_SEC": str(RING_SEC),
    "MASKLINE_SIM_TALK_SEC": str(TALK_SEC),
    # nginx listens on 127.0.0.1 over http.
    "MASKLINE_ALLOW_PRIVATE_WEBHOOKS": "true",
}
SETUPS: dict[str, tuple[str, Callable[[Path], contextlib.AbstractContextManager[Running]]]] = {
    "postgresql": (
        "PostgreSQL: 2 api processes (Redis limits) + engine + worker",
        lambda tmp: postgresql_apis(tmp, stack=True, **SERVER_ENV),
    ),
    "sqlite": (
        "embedded: one maskline serve on SQLite (api, engine and worker)",
        lambda tmp: embedded_sqlite(tmp, **SERVER_ENV),
    ),
}


@dataclasses.dataclass(frozen=True)
class Step:
    """One rate, run and judged."""

    sent: Outcome
    # Calls of the rate's organisation by "status/hangup_cause".
    outcomes: dict[str, int]
    # Events stored for the rate's calls, and those that reached nginx, by event type.
    stored: dict[str, int]
    arrived: dict[str, int]
    duplicates: int
    # New connections the webhooks came on (as many as arrivals if each opens its own).
    webhook_connections: int
    # Webhook deliveries by status (pending, succeeded, failed), as the database has them,
    # and the attempts they took (one each when none failed).
    deliveries: dict[str, int]
    attempts: int
    # Seconds from the last POST's due moment until every call had ended and every event
    # had arrived; None when that had not happened after DRAIN_WATCH_SEC.
    drain_sec: float | None
    # From a call's acceptance to the engine starting to dial it (created_at → started_at).
    dial_delay_ms: tuple[float, float]
    # From an event's commit time (created_at) to its arrival at nginx.
    webhook_delay_ms: tuple[float, float]
    # The same by event type; and, by event type, from the later of the event's commit
    # and the arrival of the call's previous event (SPEC §6 sends them in order): the
    # delay that is not the wait for the event before.
    webhook_delay_by_event_ms: dict[str, tuple[float, float]]
    webhook_own_delay_by_event_ms: dict[str, tuple[float, float]]
    # Over the load: each process's, and the machine's (100 % a core).
    usage: dict[str, Usage]
    machine_percent: float
    # Over the load and the drain after it.
    until_drained: dict[str, Usage] = dataclasses.field(default_factory=dict)
    # Each maskline process's writer over the load and the drain: (transactions
    # committed, units they committed), from its /metrics.
    writes: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)

    @property
    def placed(self) -> int:
        return self.sent.accepted()

    @property
    def ended(self) -> int:
        return sum(
            n for what, n in self.outcomes.items() if what.split("/")[0] not in LIVE_STATUSES
        )

    @property
    def completed(self) -> int:
        return self.outcomes.get("completed/NORMAL_CLEARING", 0)

    def failures(self) -> list[str]:
        """Why the rate did not hold; empty when it held."""
        found = []
        accepted = self.placed / max(self.sent.sent, 1)
        if accepted < ACCEPTED_MIN:
            found.append(f"{accepted:.2%} accepted")
        if not self.sent.latency_p99_ms < POST_P99_MAX_MS:
            found.append(f"POST p99 {self.sent.latency_p99_ms:.0f} ms")
        if self.completed < self.placed:
            found.append(f"{self.placed - self.completed} calls not completed")
        if sum(self.arrived.values()) < sum(self.stored.values()):
            found.append(
                f"{sum(self.stored.values()) - sum(self.arrived.values())} webhooks missing"
            )
        if self.drain_sec is None or self.drain_sec > DRAIN_LIMIT_SEC:
            found.append("drain " + (f"{self.drain_sec:.0f} s" if self.drain_sec else "unfinished"))
        if self.sent.lag_p99_ms > SENDER_LAG_MAX_MS:
            found.append(f"sender lag p99 {self.sent.lag_p99_ms:.0f} ms")
        return found


def _groups(running: Running, receiver: NginxReceiver) -> dict[str, Callable[[], list[int]]]:
    """The processes whose CPU and memory the tables show, by name."""
    groups: dict[str, Callable[[], list[int]]] = {
        role: functools.partial(list, [process.pid]) for role, process in running.processes.items()
    }
    if running.database_url.startswith("postgresql"):
        database = running.database_url.rpartition("/")[2]
        groups["PostgreSQL"] = lambda: pids_with_cmdline("postgres: ", f" {database} ")
        groups["Redis"] = lambda: pids_with_cmdline("redis-server")
    groups["nginx"] = lambda: children(receiver.process.pid)
    return groups


async def _org_id(db: Database, name: str) -> str:
    async with db.read() as session:
        return (
            await session.execute(select(Organisation.id).where(Organisation.name == name))
        ).scalar_one()


# A call whose work is not done: live, or its recording still to encode.
UNSETTLED = Call.status.in_(LIVE_STATUSES) | (Call.recording_status == "pending")


async def _count(db: Database, *where: ColumnElement[bool]) -> int:
    async with db.read() as session:
        count: int = (await session.execute(select(func.count()).where(*where))).scalar_one()
        return count


async def _settled(db: Database, org_id: str, arrived: int) -> bool:
    """No call of the organisation unsettled, and as many events arrived (distinct ids,
    all of them the organisation's) as are stored."""
    return (
        await _count(db, Call.org_id == org_id, UNSETTLED) == 0
        and await _count(db, CallEvent.org_id == org_id) == arrived
    )


async def _quiet(database_url: str) -> None:
    """Until no call in the database is unsettled (or ``DRAIN_WATCH_SEC`` have passed:
    the next rate's figures then say so)."""
    db = Database(database_url, pool_size=1)
    try:
        with contextlib.suppress(AssertionError):
            await eventually_value(
                lambda: _count(db, UNSETTLED),
                lambda unsettled: unsettled == 0,
                what="no unsettled call",
                within=DRAIN_WATCH_SEC,
                interval=POLL_SEC,
            )
    finally:
        await db.dispose()


def _ms_p50_p99(values: list[float]) -> tuple[float, float]:
    ms = [v * 1000 for v in values]
    return percentile(ms, 0.5), percentile(ms, 0.99)


async def _drain_and_count(
    database_url: str,
    org: str,
    receiver: NginxReceiver,
    sent: Outcome,
    usage: tuple[dict[str, Usage], float],
) -> Step:
    db = Database(database_url, pool_size=1)
    try:
        org_id = await _org_id(db, org)
        drain_sec: float | None = None
        with contextlib.suppress(AssertionError):
            await eventually(
                lambda: _settled(db, org_id, len(receiver.arrivals(org).first)),
                within=max(0.0, sent.last_due_epoch + DRAIN_WATCH_SEC - time.time()),
                interval=POLL_SEC,
            )
            drain_sec = max(0.0, time.time() - sent.last_due_epoch)
        arrivals = receiver.arrivals(org)
        async with db.read() as session:
            calls = (
                await session.execute(
                    select(Call.status, Call.hangup_cause, Call.created_at, Call.started_at)
                    .where(Call.org_id == org_id)
                )
            ).all()  # fmt: skip
            events = (
                await session.execute(
                    select(
                        CallEvent.id,
                        CallEvent.event,
                        CallEvent.created_at,
                        CallEvent.call_sid,
                        CallEvent.sequence,
                    ).where(CallEvent.org_id == org_id)
                )
            ).all()
            deliveries = (
                await session.execute(
                    select(WebhookDelivery.status, func.count(), func.sum(WebhookDelivery.attempts))
                    .where(WebhookDelivery.org_id == org_id)
                    .group_by(WebhookDelivery.status)
                )
            ).all()  # fmt: skip
    finally:
        await db.dispose()
    reached = [e for e in events if e.id in arrivals.first]
    by_event, own_by_event = _delays_by_event(reached, arrivals.first)
    return Step(
        sent=sent,
        outcomes=dict(Counter(f"{c.status}/{c.hangup_cause}" for c in calls)),
        stored=dict(Counter(e.event for e in events)),
        arrived=dict(Counter(e.event for e in reached)),
        duplicates=arrivals.duplicates,
        webhook_connections=arrivals.connections,
        deliveries={status: count for status, count, _attempts in deliveries},
        attempts=sum(attempts for _status, _count, attempts in deliveries),
        drain_sec=drain_sec,
        dial_delay_ms=_ms_p50_p99(
            [(c.started_at - c.created_at).total_seconds() for c in calls if c.started_at]
        ),
        webhook_delay_ms=_ms_p50_p99(
            [arrivals.first[e.id] - e.created_at.timestamp() for e in reached]
        ),
        webhook_delay_by_event_ms=by_event,
        webhook_own_delay_by_event_ms=own_by_event,
        usage=usage[0],
        machine_percent=usage[1],
    )


def _writer_counts(running: Running) -> dict[str, tuple[int, int]]:
    """Each maskline process's writer so far: transactions committed and the units they
    committed (``maskline_writer_*_total`` in its /metrics)."""
    counts = {}
    for role, base_url in running.base_urls.items():
        text = httpx.get(f"{base_url}/metrics", timeout=30).raise_for_status().text
        found = {
            sample.name: int(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        counts[role] = (
            found["maskline_writer_batches_total"],
            found["maskline_writer_units_total"],
        )
    return counts


def _delays_by_event(
    reached: Sequence[Any], arrived: dict[str, float]
) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """p50 and p99 of the webhook delay by event type: from the event's commit, and from
    the later of its commit and the arrival of the call's previous event."""
    previous = {(e.call_sid, e.sequence): arrived[e.id] for e in reached}
    delays: dict[str, list[float]] = {}
    own: dict[str, list[float]] = {}
    for e in reached:
        at, committed = arrived[e.id], e.created_at.timestamp()
        delays.setdefault(e.event, []).append(at - committed)
        start = max(committed, previous.get((e.call_sid, e.sequence - 1), committed))
        own.setdefault(e.event, []).append(at - start)
    return (
        {event: _ms_p50_p99(values) for event, values in sorted(delays.items())},
        {event: _ms_p50_p99(values) for event, values in sorted(own.items())},
    )


class Probe:
    """One set-up running, with nginx; runs rates, each by an organisation of its own."""

    def __init__(self, running: Running, receiver: NginxReceiver, *, record: bool) -> None:
        self.running = running
        self.receiver = receiver
        self.record = record
        self._orgs = itertools.count(1)

    def run(self, rate: float, seconds: float) -> Step:
        # A rate that did not drain leaves calls behind: the next starts once they are done.
        asyncio.run(_quiet(self.running.database_url))
        n = next(self._orgs)
        org = f"e2e-{n}"
        key = unlimited_key(
            self.running.env,
            org,
            numbers=masked_numbers(n, MASKED_NUMBERS),
            webhook_url=self.receiver.url(org),
        )
        sampler = Sampler(_groups(self.running, self.receiver))
        written = _writer_counts(self.running)
        sampler.start()
        sender = start_open_loop(
            self.running.addresses,
            key,
            rate=rate,
            seconds=seconds,
            # Parties never repeat across the rates of a run (at most 1,000,000 a rate).
            first_party=7_000_012_345 + n * 1_000_000,
            record=self.record,
        )
        sent = finish(sender, seconds)
        usage = sampler.read()
        step = asyncio.run(
            _drain_and_count(self.running.database_url, org, self.receiver, sent, usage)
        )
        # The calls' work goes on after the load: CPU a call counts it until the drain.
        until_drained, _machine = sampler.stop()
        writes = {
            role: (batches - written[role][0], units - written[role][1])
            for role, (batches, units) in _writer_counts(self.running).items()
        }
        return dataclasses.replace(step, until_drained=until_drained, writes=writes)

    def profile(self, rate: float, role: str, output: Path) -> str:
        """py-spy on the process of ``role`` for PROFILE_SEC while ``rate`` runs (from 5 s
        into the load to 5 s before its end), and on PostgreSQL what its connections do."""
        load = threading.Thread(target=self.run, args=(rate, PROFILE_SEC + 10))
        load.start()
        time.sleep(5)
        with contextlib.ExitStack() as stack:
            states = None
            if self.running.database_url.startswith("postgresql"):
                states = stack.enter_context(ConnectionStates(self.running.database_url))
            py_spy_record(self.running.processes[role].pid, output, seconds=PROFILE_SEC)
        load.join()
        found = summary(read_collapsed(output), seconds=PROFILE_SEC)
        return found if states is None else f"{found}\n\n{states.summary()}"


@contextlib.contextmanager
def probing(kind: str, tmp: Path, *, record: bool) -> Iterator[Probe]:
    """The set-up of ``kind`` and nginx running, warmed up."""
    _name, setup = SETUPS[kind]
    with nginx_receiver(tmp / "nginx") as receiver, setup(tmp) as running:
        probe = Probe(running, receiver, record=record)
        probe.run(WARMUP_RATE, WARMUP_SEC)
        yield probe


def _row(step: Step) -> str:
    sent, stored, arrived = step.sent, sum(step.stored.values()), sum(step.arrived.values())
    failures = step.failures()
    drain = f"{step.drain_sec:.1f} s" if step.drain_sec is not None else "—"
    return (
        f"| {sent.rate:g} | {sent.sent} | {step.placed / max(sent.sent, 1):.2%} "
        f"| {sent.latency_p50_ms:.0f} ms | {sent.latency_p99_ms:.0f} ms "
        f"| {step.ended} / {step.placed} | {step.completed} | {arrived} / {stored} "
        f"| {step.dial_delay_ms[1]:.0f} ms | {step.webhook_delay_ms[1]:.0f} ms | {drain} "
        f"| {sent.lag_p99_ms:.1f} ms | {'yes' if not failures else 'no: ' + ', '.join(failures)} |"
    )


def _usage_row(step: Step) -> str:
    cells = [u.cell() for u in step.usage.values()]
    # maskline's processes and its database, not the shared Redis or the receiver.
    serving = sum(
        u.cpu_sec for name, u in step.until_drained.items() if name not in ("Redis", "nginx")
    )
    return (
        f"| {step.sent.rate:g} | {' | '.join(cells)} "
        f"| {100 * step.sent.cpu_sec / step.sent.seconds:.0f}% | {step.machine_percent:.0f}% "
        f"| {1000 * serving / max(step.placed, 1):.1f} ms |"
    )


def _writes(step: Step) -> str:
    calls = max(step.placed, 1)
    return ", ".join(
        f"{role} {batches / calls:.2f} / {units / max(batches, 1):.2f}"
        for role, (batches, units) in step.writes.items()
    )


def _by_event(delays: dict[str, tuple[float, float]]) -> str:
    return ", ".join(f"{event} {p50:.0f}/{p99:.0f} ms" for event, (p50, p99) in delays.items())


def table(title: str, steps: list[Step]) -> str:
    processes = list(steps[0].usage) if steps else []
    lines = [
        title,
        "",
        "| offered/s | sent | accepted | POST p50 | POST p99 | calls ended / placed | "
        "completed | webhooks arrived / stored | dial delay p99 | webhook delay p99 | drain "
        "| sender lag p99 | holds |",
        "|" + " ---: |" * 12 + " --- |",
        *(_row(s) for s in steps),
        "",
        "CPU (100 % a core) and peak memory of each process over the load (RSS; PSS summed "
        "for several processes); CPU a call: maskline's processes and PostgreSQL from the "
        "load's start until drained, over the calls placed",
        "",
        f"| offered/s | {' | '.join(processes)} | sender | machine | CPU a call |",
        "| ---: |" + " ---: |" * (len(processes) + 3),
        *(_usage_row(s) for s in steps),
    ]
    extras = [
        f"- {s.sent.rate:g}/s: calls {s.outcomes}; events stored {s.stored}; deliveries "
        f"{s.deliveries} in {s.attempts} attempts, arrived on {s.webhook_connections} "
        f"connections, {s.duplicates} twice; p50 dial delay {s.dial_delay_ms[0]:.0f} ms, "
        f"webhook delay {s.webhook_delay_ms[0]:.0f} ms; sender {s.sent.connections} "
        f"connections, errors {s.sent.errors or 0}, slowest POSTs (number, ms) "
        f"{[tuple(x) for x in s.sent.slowest]}; webhook delay p50/p99 by event "
        f"{_by_event(s.webhook_delay_by_event_ms)}, not counting the wait for the call's "
        f"previous event {_by_event(s.webhook_own_delay_by_event_ms)}; each process's "
        f"writer until drained, transactions a call and units a transaction: "
        f"{_writes(s)}"
        for s in steps
    ]
    return "\n".join([*lines, "", *extras])


def e2e(
    kind: str,
    *,
    rates: tuple[float, ...] = RATES,
    seconds: float = STEP_SEC,
    hold: float = HOLD_SEC,
    record: bool = False,
    profile: bool = False,
) -> str:
    name, _setup = SETUPS[kind]
    conditions = (
        f"sim ring {RING_SEC} s a leg, talk {TALK_SEC} s, record {str(record).lower()}; "
        f"webhooks to nginx; load average {os.getloadavg()[0]:.1f} at the start"
    )
    steps: list[Step] = []
    with tempfile.TemporaryDirectory() as tmp, probing(kind, Path(tmp), record=record) as probe:
        for rate in rates:
            steps.append(probe.run(rate, seconds))
            print(f"{kind}: {_row(steps[-1])}", file=sys.stderr, flush=True)
            if steps[-1].failures():
                break
    held = [s for s in steps if not s.failures()]
    parts = [
        table(f"End to end, {name}: open-loop POSTs, {seconds:g} s a rate ({conditions})", steps)
    ]
    if not held:
        parts.append(f"highest rate that holds on {kind}: none of {rates[0]:g}/s and up")
        return "\n\n".join(parts)
    best = held[-1].sent.rate
    parts.append(f"highest rate that holds for {seconds:g} s on {kind}: {best:g} calls/s")
    if hold:
        with tempfile.TemporaryDirectory() as tmp, probing(kind, Path(tmp), record=record) as probe:
            # The best rate, and if it fails the one below it: a figure held for `hold`.
            confirmed: list[Step] = []
            for candidate in reversed(held[-2:]):
                confirmed.append(probe.run(candidate.sent.rate, hold))
                print(f"{kind}: {_row(confirmed[-1])}", file=sys.stderr, flush=True)
                if not confirmed[-1].failures():
                    break
            parts.append(table(f"Held {hold:g} s on a fresh start ({conditions})", confirmed))
            holding = [s.sent.rate for s in confirmed if not s.failures()]
            parts.append(
                f"held for {hold:g} s on {kind}: {holding[0]:g} calls/s"
                if holding
                else f"held for {hold:g} s on {kind}: none of "
                + " and ".join(f"{s.sent.rate:g}" for s in confirmed)
                + " calls/s"
            )
            if profile:
                # Where it breaks: the first rate that failed in the ramp, if one did.
                rate = steps[-1].sent.rate
                usage = steps[-1].usage
                busiest = max(probe.running.processes, key=lambda r: usage[r].cpu_percent)
                output = Path(tmp) / f"e2e-{kind}-{busiest.replace(' ', '-')}.txt"
                parts.append(
                    f"py-spy on the busiest maskline process ({busiest}) at {rate:g}/s:\n\n"
                    + probe.profile(rate, busiest, output)
                )
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kinds", nargs="*", help=f"{' and/or '.join(SETUPS)} (default: both)")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES))
    parser.add_argument("--seconds", type=float, default=STEP_SEC, help="a rate's run")
    parser.add_argument("--hold", type=float, default=HOLD_SEC, help="the best rate's; 0: none")
    parser.add_argument("--record", action="store_true", help="calls recorded (default: not)")
    parser.add_argument("--profile", action="store_true", help="py-spy the busiest process")
    args = parser.parse_args()
    rates = tuple(float(r) for r in args.rates.split(","))
    kinds = args.kinds or list(SETUPS)
    if unknown := set(kinds) - set(SETUPS):
        parser.error(f"no set-up {', '.join(sorted(unknown))}: {' or '.join(SETUPS)}")
    print(f"# maskline end to end, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()}")
    for kind in kinds:
        print(
            e2e(
                kind,
                rates=rates,
                seconds=args.seconds,
                hold=args.hold,
                record=args.record,
                profile=args.profile,
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
