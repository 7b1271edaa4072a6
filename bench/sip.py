"""Issue 7's figures for the sip carrier, against SIPp as the trunk on loopback.

- connect latency on the wire, A's 200 OK → B's INVITE: SIPp logs every message
  with its own clock, so both ends of the gap are timestamped by the same process;
- the highest call rate sustained for 60 s with no failed call;
- concurrent bridged calls with RTP flowing both ways and recorded: the CPU the
  maskline process uses, and the relay's packet loss (sent by the phones vs
  received by the phones on the other side).

Phones are a separate process (``python -m bench.sip phones``), so their CPU is
not counted as maskline's. ``python -m bench.sip media [sqlite|postgresql] [N,N,...]``
runs the media figure for each number of concurrent calls (default 50, 100, 200, 300):
the relay's CPU a packet, and from how many calls it loses packets.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvloop
from fastapi import FastAPI
from sqlalchemy import func, select

from bench.calls import SECRET, unlimited_org
from bench.stats import summary_ms
from maskline.app import create_app
from maskline.calls.models import Call
from maskline.runtime import Runtime
from maskline.settings import Settings
from maskline.telephony.events import Leg
from maskline.telephony.sip.carrier import SipCarrier
from tests.support.databases import fresh_database
from tests.support.sipp import Sipp, fragment, free_udp_port

PARTY_A = "9876543210"  # the scenario's party A; each call gets its own party B
_STAMP = re.compile(r"^-{10,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)$", re.MULTILINE)


def _gaps(log: str) -> tuple[list[float], int]:
    """(A's 200 sent → B's INVITE received) per call, matched by the masked From user."""
    answered: dict[str, float] = {}
    gaps: list[float] = []
    parts = _STAMP.split(log)
    for stamp, body in zip(parts[1::2], parts[2::2], strict=True):
        at = datetime.fromisoformat(stamp).timestamp()
        lines = body.strip().splitlines()
        if len(lines) < 3:
            continue
        direction, first = lines[0], lines[2]
        caller = re.search(r"^From:.*?sip:(\+\d+)@", body, re.MULTILINE)
        if caller is None:
            continue
        if direction.startswith("UDP message sent") and first.startswith("SIP/2.0 200"):
            to_a = re.search(rf"^To:.*sip:\+91{PARTY_A}@", body, re.MULTILINE)
            if to_a and caller.group(1) not in answered:
                answered[caller.group(1)] = at
        elif (
            direction.startswith("UDP message received")
            and first.startswith("INVITE")
            and f"sip:+91{PARTY_A}@" not in first
            and caller.group(1) in answered
        ):
            gaps.append(at - answered.pop(caller.group(1)))
    return gaps, len(answered)


async def _run(url: str, tmp: Path, *, calls: int, rate: float) -> str:
    sipp = Sipp(
        "answer.xml",
        tmp / "sipp",
        calls=2 * calls,
        pause_ms=500,
        variables={"aport": str(free_udp_port()), "bport": str(free_udp_port())},
        fill={
            "A_ANSWERED": fragment("send_bye"),
            "B_ANSWERED": fragment("wait_bye"),
            "B_BEFORE_ANSWER": "",
        },
    )
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        secret_key=SECRET,
        data_dir=tmp / "data",
        carrier="sip",
        sip_trunk=sipp.trunk,
        sip_bind=f"127.0.0.1:{free_udp_port()}",
        rtp_ports="10000-19999",
        log_level="WARNING",
    )
    app = create_app(settings, announce=lambda _c: None)
    try:
        async with app.router.lifespan_context(app):
            runtime = app.state.runtime
            pool = [f"9180{n:08d}" for n in range(10_000_000, 10_000_000 + 2 * calls)]
            api_key = await unlimited_org(runtime, "sip-bench", pool)
            headers = {"Authorization": f"Bearer {api_key}"}
            transport = httpx.ASGITransport(app=app)
            started = time.perf_counter()
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                for n in range(calls):
                    due = started + n / rate
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    response = await http.post(
                        "/v1/masking/calls",
                        headers=headers,
                        json={
                            "party_a": PARTY_A,
                            "party_b": f"91{n + 23_456_789:08d}",
                            "record": False,
                        },
                    )
                    assert response.status_code == 201, response.text
            placed_in = time.perf_counter() - started
            code = await sipp.finished(within=120)
    finally:
        sipp.close()
    gaps, unmatched = _gaps(sipp.log.read_text(errors="replace"))
    return (
        f"sip connect latency on the wire (A's 200 OK sent → B's INVITE received, SIPp's "
        f"clock), {calls} calls placed at {calls / placed_in:.0f}/s (asked {rate:.0f}/s): "
        f"{summary_ms(gaps)}; SIPp exit {code}, {unmatched} A legs without a B"
    )


def sip_connect_latency(kind: str, *, calls: int = 200, rate: float = 10.0) -> str:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), kind=kind) as url:
        return asyncio.run(_run(url, Path(tmp), calls=calls, rate=rate))


# -- shared: an app on the sip carrier, SIPp answering both legs --------------------


def _answering(tmp: Path, *, calls: int, hold_ms: int, timeout_sec: int) -> Sipp:
    """SIPp answering every A and B leg; A hangs up after ``hold_ms``."""
    return Sipp(
        "answer.xml",
        tmp / f"sipp-{time.monotonic_ns()}",
        calls=2 * calls,
        pause_ms=hold_ms,
        variables={"aport": str(free_udp_port()), "bport": str(free_udp_port())},
        fill={
            "A_ANSWERED": fragment("send_bye"),
            "B_ANSWERED": fragment("wait_bye"),
            "B_BEFORE_ANSWER": "",
        },
        timeout_sec=timeout_sec,
    )


@asynccontextmanager
async def _sip_app(url: str, tmp: Path, sipp: Sipp) -> AsyncIterator[FastAPI]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        secret_key=SECRET,
        data_dir=tmp / "data",
        carrier="sip",
        sip_trunk=sipp.trunk,
        sip_bind=f"127.0.0.1:{free_udp_port()}",
        sip_max_cps=1000,  # the trunk's own limit is not what is measured here
        rtp_ports="10000-19999",
        log_level="WARNING",
    )
    app = create_app(settings, announce=lambda _c: None)
    async with app.router.lifespan_context(app):
        yield app


async def _place(
    app: FastAPI, api_key: str, *, calls: int, rate: float, first_b: int, record: bool
) -> tuple[list[str], float]:
    """Place ``calls`` calls at ``rate`` a second; their sids and the rate achieved."""
    headers = {"Authorization": f"Bearer {api_key}"}
    sids: list[str] = []
    transport = httpx.ASGITransport(app=app)
    started = time.perf_counter()
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        for n in range(calls):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            response = await http.post(
                "/v1/masking/calls",
                headers=headers,
                json={
                    "party_a": PARTY_A,
                    "party_b": f"91{first_b + n:08d}",
                    "record": record,
                },
            )
            if response.status_code != 201:
                raise RuntimeError(f"POST answered {response.status_code}: {response.text}")
            sids.append(response.json()["data"]["call_sid"])
    return sids, calls / (time.perf_counter() - started)


async def _outcomes(runtime: Runtime, sids: list[str], *, within: float) -> Counter[str]:
    """``status/cause`` of each call, once none is live (or ``within`` has passed)."""
    deadline = time.monotonic() + within
    while True:
        async with runtime.db.read() as session:
            rows = (
                await session.execute(
                    select(Call.status, Call.hangup_cause, func.count())
                    .where(Call.call_sid.in_(sids))
                    .group_by(Call.status, Call.hangup_cause)
                )
            ).all()
        found: Counter[str] = Counter({f"{s}/{c}": int(n) for s, c, n in rows})
        live = sum(n for key, n in found.items() if key.split("/")[0] not in _TERMINAL)
        if live == 0 or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


_TERMINAL = ("completed", "failed", "no-answer")
_GOOD = "completed/NORMAL_CLEARING"


# -- the highest sustained call rate ------------------------------------------------


async def _trial(url: str, tmp: Path, *, rate: float, seconds: float, offset: int) -> str | None:
    """Place calls at ``rate`` for ``seconds``; None if every one completed, else why not."""
    calls = max(1, round(rate * seconds))
    sipp = _answering(tmp, calls=calls, hold_ms=500, timeout_sec=int(seconds) + 120)
    try:
        async with _sip_app(url, tmp, sipp) as app:
            runtime = app.state.runtime
            pool = [f"9181{n:08d}" for n in range(offset, offset + min(calls, 4000))]
            api_key = await unlimited_org(runtime, f"sip-rate-{offset}", pool)
            sids, achieved = await _place(
                app, api_key, calls=calls, rate=rate, first_b=offset, record=False
            )
            found = await _outcomes(runtime, sids, within=60)
            code = await sipp.finished(within=60)
    finally:
        sipp.close()
    if achieved < rate * 0.95:
        return f"calls could only be placed at {achieved:.1f}/s"
    if found[_GOOD] != calls:
        return f"{calls - found[_GOOD]} of {calls} calls failed: {dict(found)}"
    if code != 0:
        return f"SIPp exit {code}: {sipp.errors()[-300:]}"
    return None


async def _max_rate(url: str, tmp: Path, rates: tuple[float, ...], probe_sec: float) -> str:
    passed: list[float] = []
    failure = ""
    offset = 10_000_000
    # Short probes, rising, until one fails; then 60 s at the best rate (one step down
    # if that does not hold).
    for rate in rates:
        why = await _trial(url, tmp, rate=rate, seconds=probe_sec, offset=offset)
        offset += 100_000
        if why is not None:
            failure = f"{rate:g}/s failed a {probe_sec:g} s probe ({why})"
            break
        passed.append(rate)
    for rate in sorted(passed, reverse=True)[:2]:
        why = await _trial(url, tmp, rate=rate, seconds=60, offset=offset)
        offset += 100_000
        if why is None:
            return (
                f"sip highest call rate sustained 60 s with no failed call: {rate:g} calls/s "
                f"({rate * 60:.0f} calls, each A and B answered, 0.5 s talk, A's BYE); "
                f"probes {', '.join(f'{r:g}' for r in rates)}/s; {failure or 'none failed'}"
            )
        failure = f"{rate:g}/s failed over 60 s ({why}); " + failure
    return f"sip highest call rate sustained 60 s: none of {rates} held ({failure})"


def sip_max_rate(
    kind: str,
    *,
    rates: tuple[float, ...] = (10, 20, 30, 40, 60, 80),
    probe_sec: float = 10,
) -> str:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), kind=kind) as url:
        return asyncio.run(_max_rate(url, Path(tmp), rates, probe_sec))


# -- concurrent calls with media ----------------------------------------------------

FRAME = 160
PACKET_SEC = 0.02


def phones_main() -> None:
    """``python -m bench.sip phones``: RTP phones for the pairs of relay ports on stdin.

    Each call gets two sockets (A and B). Every 20 ms each sends a PCMU packet to its
    leg's relay port; packets of the measured stretch carry a marker byte of 1. Prints
    the marked packets sent and received, as JSON.
    """
    job = json.loads(sys.stdin.readline())
    pairs: list[list[int]] = job["pairs"]
    warmup, measure = float(job["warmup"]), float(job["measure"])
    sockets: list[tuple[socket.socket, tuple[str, int]]] = []
    for a_port, b_port in pairs:
        for port in (a_port, b_port):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            sockets.append((sock, ("127.0.0.1", port)))
    received = 0
    sent = 0
    # Marked packets each socket received: a stream that got none is a leg not relayed.
    by_stream = [0] * len(sockets)
    start = time.monotonic()
    cpu_start = time.process_time()
    seq = 0
    end_send = start + warmup + measure
    while True:
        now = time.monotonic()
        if now >= end_send + 1.0:
            break
        if now < end_send:
            marked = start + warmup <= now
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * FRAME, 0x5EED)
            payload = (b"\x01" if marked else b"\x00") + b"\xff" * (FRAME - 1)
            for sock, target in sockets:
                sock.sendto(header + payload, target)
            if marked:
                sent += len(sockets)
            seq += 1
        deadline = start + (seq + (0 if now < end_send else 1)) * PACKET_SEC
        while True:
            got_any = False
            for index, (sock, _) in enumerate(sockets):
                try:
                    while True:
                        data = sock.recv(2048)
                        got_any = True
                        if len(data) > 12 and data[12] == 1:
                            received += 1
                            by_stream[index] += 1
                except BlockingIOError:
                    pass
            if time.monotonic() >= deadline:
                break
            if not got_any:
                time.sleep(0.001)
    cpu = time.process_time() - cpu_start
    wall = time.monotonic() - start
    for sock, _ in sockets:
        sock.close()
    silent = sum(1 for n in by_stream if n == 0)
    print(
        json.dumps(
            {"sent": sent, "received": received, "cpu_percent": 100 * cpu / wall, "silent": silent}
        )
    )


# Calls a second the media figure places its calls at.
PLACE_RATE = 25.0


async def _concurrent(url: str, tmp: Path, *, calls: int, measure: float) -> str:
    warmup = 2.0
    # A talks from its answer for as long as placing the rest, the phones' run and a
    # margin take: with the placing left out, the first calls of a run of 200 hung up
    # while the phones were still sending to them (their packets were counted lost).
    hold_ms = int((calls / PLACE_RATE + warmup + measure + 8) * 1000)
    sipp = _answering(tmp, calls=calls, hold_ms=hold_ms, timeout_sec=120)
    try:
        async with _sip_app(url, tmp, sipp) as app:
            runtime = app.state.runtime
            pool = [f"9182{n:08d}" for n in range(calls)]
            api_key = await unlimited_org(runtime, "sip-media", pool)
            sids, _ = await _place(
                app, api_key, calls=calls, rate=PLACE_RATE, first_b=20_000_000, record=True
            )
            carrier = runtime.engine.carriers["sip"]
            assert isinstance(carrier, SipCarrier)
            deadline = time.monotonic() + 30
            while True:
                async with runtime.db.read() as session:
                    bridged = (
                        await session.execute(
                            select(func.count())
                            .select_from(Call)
                            .where(Call.call_sid.in_(sids), Call.status == "in-progress")
                        )
                    ).scalar_one()
                if bridged == calls or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            sessions = [carrier.relay.sessions[sid] for sid in sids]
            pairs = [[s.local(Leg.A).port, s.local(Leg.B).port] for s in sessions]
            phones = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.sip",
                "phones",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            job = {"pairs": pairs, "warmup": warmup, "measure": measure}
            talking = asyncio.create_task(phones.communicate((json.dumps(job) + "\n").encode()))
            await asyncio.sleep(warmup)

            def relayed() -> int:
                return sum(s.counters(leg)[0] for s in sessions for leg in (Leg.A, Leg.B))

            cpu0, wall0, relayed0 = time.process_time(), time.perf_counter(), relayed()
            await asyncio.sleep(measure)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            # What the relay took in: the phones fall short of 50 a stream a second once
            # their own core is full.
            packets = relayed() - relayed0
            out, _ = await talking
            result: dict[str, Any] = json.loads(out)
            found = await _outcomes(runtime, sids, within=60)
            await sipp.finished(within=60)
    finally:
        sipp.close()
    sent, received = int(result["sent"]), int(result["received"])
    loss = 100 * (sent - received) / sent if sent else float("nan")
    return (
        f"sip {calls} concurrent bridged calls ({bridged} bridged), RTP both ways "
        f"({2 * calls} streams, {2 * calls * 50} packets/s offered, {packets / wall:.0f}/s "
        f"into the relay) and recorded: maskline process CPU {100 * cpu / wall:.0f}% of "
        f"one core over {wall:.0f} s ({1e6 * cpu / max(packets, 1):.1f} µs a packet "
        f"relayed), the phones' "
        f"{float(result['cpu_percent']):.0f}%; relay packet loss {loss:.3f}% "
        f"({sent - received} of {sent}; {result['silent']} of {2 * calls} streams got "
        f"nothing); calls {dict(found)}"
    )


def sip_concurrent_media(kind: str, *, calls: int = 50, measure: float = 10.0) -> str:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), kind=kind) as url:
        # uvloop, as ``maskline serve`` and the SIP process run: the relay's cost a
        # packet is mostly the loop's (the standard loop's is about half again more).
        return uvloop.run(_concurrent(url, Path(tmp), calls=calls, measure=measure))


def media_main(args: list[str]) -> None:
    kind = args[0] if args else "sqlite"
    counts = [int(n) for n in args[1].split(",")] if len(args) > 1 else [50, 100, 200, 300]
    for calls in counts:
        print(sip_concurrent_media(kind, calls=calls), flush=True)


if __name__ == "__main__" and sys.argv[1:] == ["phones"]:
    phones_main()
elif __name__ == "__main__" and sys.argv[1:2] == ["media"]:
    media_main(sys.argv[2:])
