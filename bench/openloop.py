"""An open-loop load generator: POST /v1/masking/calls at a fixed rate, each request sent at
its own time (``start + i / rate``) whatever the earlier ones are doing.

wrk is closed-loop (a connection sends its next request only after the last response), so
a slow server slows the load down and hides its own queue. Here a request that finds no
idle connection opens a new one, and its latency is counted from the moment it was due,
not from when it could be sent, so a queue anywhere (in the sender, the kernel's accept
backlog, the server) shows as latency. Neither oha nor vegeta (both open-loop, in Rust and
Go) is packaged by Debian 12 or PyPI, and wrk2 is not packaged at all, so this sender is
Python: asyncio streams on uvloop, HTTP/1.1 written and read by hand (no client library on
the path: a few tens of microseconds a request), in a process of its own so that its CPU
is measured apart, at a real-time priority where it may (root). It reports its schedule
lag (how late it was in starting each request), which says whether it kept its schedule
at all: against nginx on a loaded 2-core VM, p99 under 1.1 ms at 100, 300 and 1,000
requests/s, at 4 %, 8 % and 18 % of a core.

``python -m bench.openloop --target HOST:PORT [--target …] --key KEY --rate R --seconds S
--first-party N [--party-a-from A] [--record]`` prints one JSON object (``Outcome``);
``start_open_loop`` starts it and ``finish`` reads it. Each request has a new pair of
ordinary mobile numbers (``bench.numbers.parties``) from ``--first-party`` on; with
``--party-a-from``, request i's party A is A + i and its party B first-party + i (a SIPp
trunk then tells A's legs from B's, and pairs them, by the numbers alone); the targets
take the requests in turn, as behind a load balancer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import uvloop

from bench.numbers import parties
from bench.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
# A request still unanswered this long after it was due has failed ("timeout").
TIMEOUT_SEC = 10.0
# uvicorn closes a connection idle for 5 s (its keep-alive timeout): older idle ones are
# not reused, so that a request is not sent on a socket the server is closing.
IDLE_SEC = 4.0
# SCHED_FIFO priority (1-99) of the sender process: the lowest real-time class is enough.
REALTIME_PRIORITY = 1
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)


@dataclass
class Outcome:
    """What one run measured. Latencies count from the moment each request was due."""

    rate: float
    seconds: float
    sent: int
    # Responses by HTTP status (keys are strings: this goes through JSON).
    statuses: dict[str, int]
    # Requests that got no response, by what happened (timeout, the connection's error).
    errors: dict[str, int]
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    # How late the sender itself was in starting each request (its event loop's lag).
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    connections: int
    # CPU seconds of the sender process over the run.
    cpu_sec: float
    # Wall-clock (epoch) time of the last request's due moment: the load stops there.
    last_due_epoch: float
    # The slowest responses: [request number from 0, latency ms], slowest first.
    slowest: list[tuple[int, float]]

    def accepted(self, status: str = "201") -> int:
        return self.statuses.get(status, 0)


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        self.writer.close()


class _Target:
    """One API process: its idle connections, most recently used first."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.idle: list[_Conn] = []
        self.opened = 0

    async def connect(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        return _Conn(reader, writer)

    def take_idle(self, now: float) -> _Conn | None:
        while self.idle:
            conn = self.idle.pop()
            if now - conn.idle_since < IDLE_SEC and not conn.reader.at_eof():
                return conn
            conn.close()
        return None


class _Sender:
    def __init__(self, targets: list[str], key: str, *, record: bool) -> None:
        self.targets = [_Target(t) for t in targets]
        self.head = (
            "POST /v1/masking/calls HTTP/1.1\r\n"
            f"Host: {targets[0]}\r\n"
            f"Authorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self.record = b"true" if record else b"false"
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        # (request number, seconds from due to response)
        self.latencies: list[tuple[int, float]] = []

    def request(self, a: int, b: int) -> bytes:
        body = b'{"party_a":"%d","party_b":"%d","record":%s}' % (a, b, self.record)
        return self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, bytes, bool]:
        conn.writer.write(request)
        head = await conn.reader.readuntil(b"\r\n\r\n")
        length = _CONTENT_LENGTH.search(head)
        if not head.startswith(b"HTTP/1.1 ") or length is None:
            raise ConnectionError(f"unexpected response head {head[:80]!r}")
        body = await conn.reader.readexactly(int(length[1]))
        return int(head[9:12]), body, _CLOSE.search(head) is None

    async def one(self, number: int, target: _Target, request: bytes, due: float) -> None:
        conn: _Conn | None = None
        try:
            async with asyncio.timeout(due + TIMEOUT_SEC - time.monotonic()):
                conn = target.take_idle(time.monotonic())
                reused = conn is not None
                if conn is None:
                    conn = await target.connect()
                try:
                    status, _body, keep = await self._exchange(conn, request)
                except (ConnectionError, asyncio.IncompleteReadError):
                    if not reused:
                        raise
                    # The server closed an idle connection as the request went out: it
                    # never read the request, so it goes again on a new connection.
                    conn.close()
                    conn = await target.connect()
                    status, _body, keep = await self._exchange(conn, request)
        except TimeoutError:
            self.errors["timeout"] += 1
            if conn is not None:
                conn.close()
            return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.errors[type(exc).__name__] += 1
            if conn is not None:
                conn.close()
            return
        self.latencies.append((number, time.monotonic() - due))
        self.statuses[str(status)] += 1
        if keep:
            conn.idle_since = time.monotonic()
            target.idle.append(conn)
        else:
            conn.close()


async def _run(
    targets: list[str],
    key: str,
    *,
    rate: float,
    seconds: float,
    first_party: int,
    record: bool,
    party_a_from: int | None = None,
) -> Outcome:
    # Times come from time.monotonic(): uvloop's loop.time() counts whole milliseconds.
    sender = _Sender(targets, key, record=record)
    # A few connections ready before the first request is due, as a client with a pool.
    for target in sender.targets:
        for conn in await asyncio.gather(*(target.connect() for _ in range(4))):
            conn.idle_since = time.monotonic()
            target.idle.append(conn)
    numbers = parties(first_party)
    pairs = (
        ((next(numbers), next(numbers)) for _ in itertools.count())
        if party_a_from is None
        else ((party_a_from + i, first_party + i) for i in itertools.count())
    )
    count = round(rate * seconds)
    cpu = time.process_time()
    start = time.monotonic() + 0.05
    epoch_offset = time.time() - time.monotonic()
    lags: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    for i in range(count):
        due = start + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        lags.append(max(0.0, time.monotonic() - due))
        request = sender.request(*next(pairs))
        task = asyncio.create_task(sender.one(i, sender.targets[i % len(targets)], request, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    last_due = start + (count - 1) / rate
    if tasks:
        await asyncio.wait(tasks)
    for target in sender.targets:
        for conn in target.idle:
            conn.close()
    ms = [v * 1000 for _i, v in sender.latencies]
    slowest = sorted(sender.latencies, key=lambda latency: -latency[1])[:5]
    lag_ms = [v * 1000 for v in lags]
    return Outcome(
        rate=rate,
        seconds=seconds,
        sent=count,
        statuses=dict(sender.statuses),
        errors=dict(sender.errors),
        latency_p50_ms=percentile(ms, 0.5),
        latency_p99_ms=percentile(ms, 0.99),
        latency_max_ms=max(ms, default=float("nan")),
        lag_p50_ms=percentile(lag_ms, 0.5),
        lag_p99_ms=percentile(lag_ms, 0.99),
        lag_max_ms=max(lag_ms, default=float("nan")),
        connections=sum(t.opened for t in sender.targets),
        cpu_sec=time.process_time() - cpu,
        last_due_epoch=last_due + epoch_offset,
        slowest=[(i, round(v * 1000, 1)) for i, v in slowest],
    )


def start_open_loop(
    targets: list[str],
    key: str,
    *,
    rate: float,
    seconds: float,
    first_party: int,
    record: bool = False,
    party_a_from: int | None = None,
) -> subprocess.Popen[str]:
    """Start the sender in a process of its own; ``finish`` waits for its outcome."""
    command = [
        sys.executable, "-m", "bench.openloop", "--key", key, "--rate", str(rate),
        "--seconds", str(seconds), "--first-party", str(first_party),
        *(a for t in targets for a in ("--target", t)), *(["--record"] if record else []),
        *([] if party_a_from is None else ["--party-a-from", str(party_a_from)]),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], seconds: float) -> Outcome:
    stdout, _ = process.communicate(timeout=seconds + TIMEOUT_SEC + 60)
    if process.returncode != 0:
        raise RuntimeError(f"the open-loop sender failed ({process.returncode})")
    return Outcome(**json.loads(stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", required=True, help="HOST:PORT")
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests a second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--first-party", type=int, required=True)
    parser.add_argument("--record", action="store_true", help='"record": true in each body')
    parser.add_argument("--party-a-from", type=int, help="request i's A is this + i")
    args = parser.parse_args()
    # The sender is judged by its schedule, on cores it shares with the servers under test
    # (and, here, with other work): a real-time priority keeps it (p99 lag about 1 ms up
    # to 1,000 requests/s, where nice -10 still saw 20-120 ms on a loaded machine) for the
    # little CPU it takes; the kernel's real-time throttling bounds it whatever happens.
    # Only root may: then it runs at nice -10 if it can, as it is otherwise.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except PermissionError:
        with contextlib.suppress(PermissionError):
            os.nice(-10)
    # Open loop: every request that finds no idle connection opens one of its own.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    outcome = uvloop.run(
        _run(
            args.target,
            args.key,
            rate=args.rate,
            seconds=args.seconds,
            first_party=args.first_party,
            record=args.record,
            party_a_from=args.party_a_from,
        )
    )
    json.dump(asdict(outcome), sys.stdout)


if __name__ == "__main__":
    main()
