"""Issue 14's SIP figures: the sustained SIP call rate and the connect latency on the wire
with the API and the engine in separate processes, SIPp as the trunk on loopback.

For each set-up (``bench/setups.py``: 2 api processes with Redis limits + an engine on the
sip carrier + a worker on PostgreSQL; one embedded ``maskline serve`` on SQLite), each
rate is a trial of its own on a fresh start (fresh database, fresh processes, a SIPp of
its own whose exit code judges only that trial's calls):

1. SIPp answers every leg (the tests' ``answer.xml``: ring 100 ms, then 200 OK), A hangs
   up after ``TALK_MS``; it tells A's legs from B's by the number dialled (A's from
   ``A_FROM`` on, +9198…; B's from ``B_FROM`` on, +9171…);
2. a warm-up (``WARMUP_RATE`` for ``WARMUP_SEC``) whose calls are left out of the figures;
3. calls placed open-loop at the rate for the trial's seconds by ``bench/openloop.py``
   in a process of its own (each POST due at its own moment, whatever the earlier ones
   are doing): call i has party A ``A_FROM`` + i and party B ``B_FROM`` + i, new parties
   each, as in production (one party A in every call would measure the pool's
   contention for that party's free numbers instead);
4. once every call has ended: each call's status and hangup cause from the database,
   SIPp's exit code (0: every leg went through its scenario), and the connect latency on
   the wire, A's 200 OK sent → B's INVITE received, both stamped by SIPp's own clock in
   its message trace (``-trace_msg``), paired by the call's i; CPU and peak RSS of each
   process over the load.

A rate holds when every POST is answered 201, every call ends ``completed`` /
``NORMAL_CLEARING``, SIPp exits 0 and the sender kept its schedule (lag p99 under
``SENDER_LAG_MAX_MS``). The ramp runs every rate asked (the figures at 100 and 200/s are
wanted whether or not a lower rate failed); then the best rate that held runs once more
for ``HOLD_SEC``. With ``--profile``, the highest rate runs once more with py-spy on the
engine process (the embedded process on SQLite), its stacks summed by area
(``bench/post_profile.py``).

``make bench-sip`` (``python -m bench.sip_rate [postgresql] [sqlite] [--rates 50,100,…]
[--seconds 30] [--hold 60] [--profile] [--sip-process PRIORITY] [--sipp-priority PRIORITY]
[--max-cps N]``): ``--sip-process`` runs the SIP stack in a process of its own
(``MASKLINE_SIP_PROCESS``) at that real-time priority (0: none); ``--sipp-priority`` gives
SIPp, which stands for the trunk and the network, a real-time priority too, so that it is
neither starved by ours (its socket overflowed at 100 calls/s) nor late to stamp.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import os
import platform
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bench.numbers import masked_numbers
from bench.openloop import Outcome, finish, start_open_loop
from bench.post_profile import py_spy_record, read_collapsed, summary
from bench.procstat import Sampler, Usage, pids_with_cmdline
from bench.setups import Running, embedded_sqlite, postgresql_apis
from bench.stats import percentile
from maskline.calls.models import LIVE_STATUSES, Call
from maskline.kit.db import Database
from tests.support.sipp import SCENARIOS, Sipp, fragment, free_udp_port

# Call i's parties: A_FROM + i and B_FROM + i (the warm-up's: WARMUP_A_FROM, WARMUP_B_FROM).
A_FROM, B_FROM = 9_810_000_000, 7_110_000_000
WARMUP_A_FROM, WARMUP_B_FROM = 9_800_000_000, 7_100_000_000
TALK_MS = 500
RATES = (50.0, 100.0, 150.0, 200.0)
STEP_SEC = 30.0
HOLD_SEC = 60.0
WARMUP_RATE = 10.0
# MASKLINE_SIP_MAX_CPS by default: so high that new legs go out as the engine asks for
# them, in its bursts (a claim of up to fifty calls), unpaced.
UNPACED_CPS = 10_000
WARMUP_SEC = 3.0
# Every call has new parties, so one number would do; a few let the least-recently-used
# choice spread the calls as in production (as bench/e2e.py).
MASKED_NUMBERS = 10
SENDER_LAG_MAX_MS = 50.0
# How long after the load the calls and SIPp get to finish.
DRAIN_SEC = 60.0
PROFILE_SEC = 20.0
GOOD = "completed/NORMAL_CLEARING"
_STAMP = re.compile(r"^-{10,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)$", re.MULTILINE)
_TO_A = re.compile(r"^To:.*?sip:\+91(98\d{8})@", re.MULTILINE)
_INVITE_B = re.compile(r"^INVITE sip:\+91((?!98)\d{10})@")
# answer.xml's test for party A's INVITE, and the one here.
_IS_A = ("^INVITE sip:\\+919876543210@", "^INVITE sip:\\+9198[0-9]{8}@")

Setup = Callable[[Path, dict[str, str]], contextlib.AbstractContextManager[Running]]
SETUPS: dict[str, tuple[str, str, Setup]] = {
    "postgresql": (
        "PostgreSQL: 2 api processes (Redis limits) + engine (sip carrier) + worker",
        "engine",
        lambda tmp, env: postgresql_apis(
            tmp, stack=True, numbers=masked_numbers(1, MASKED_NUMBERS), **env
        ),
    ),
    "sqlite": (
        "embedded: one maskline serve on SQLite (api, engine on the sip carrier, worker)",
        "embedded",
        lambda tmp, env: embedded_sqlite(tmp, numbers=masked_numbers(1, MASKED_NUMBERS), **env),
    ),
}


def _sip_env(trunk: str, sip_process: int | None, max_cps: int) -> dict[str, str]:
    """``sip_process``: None, the SIP stack in the engine; else in a process of its own at
    that real-time priority (0: none). ``max_cps``: MASKLINE_SIP_MAX_CPS, new legs a
    second towards the trunk (both legs of a call count)."""
    own = {} if sip_process is None else {
        "MASKLINE_SIP_PROCESS": "true",
        "MASKLINE_SIP_REALTIME_PRIORITY": str(sip_process),
    }  # fmt: skip
    return own | {
        "MASKLINE_CARRIER": "sip",
        "MASKLINE_SIP_TRUNK": trunk,
        "MASKLINE_SIP_BIND": f"127.0.0.1:{free_udp_port()}",
        # The trunk's own pacing of new legs is not what is measured here.
        "MASKLINE_SIP_MAX_CPS": str(max_cps),
        "MASKLINE_RTP_PORTS": "10000-19999",
    }


@dataclasses.dataclass(frozen=True)
class Trial:
    """One rate, run on a fresh start and judged."""

    sent: Outcome
    # The rate's calls (not the warm-up's) by "status/hangup_cause".
    outcomes: dict[str, int]
    # SIPp's exit code; None when it had not finished DRAIN_SEC after the load.
    sipp_exit: int | None
    sipp_errors: str
    # A's 200 OK sent → B's INVITE received, seconds, for the rate's calls; and the A legs
    # answered that saw no B INVITE.
    gaps: list[float]
    unmatched: int
    usage: dict[str, Usage]
    machine_percent: float
    profile: str = ""
    # The engine's own connect (``maskline_connect_latency_seconds``: A's 200 OK taken in
    # by its SIP stack → B's INVITE handed to the socket) over the rate's calls: how many
    # at most each bucket's bound, in seconds.
    engine_connect: dict[float, int] = dataclasses.field(default_factory=dict)

    @property
    def completed(self) -> int:
        return self.outcomes.get(GOOD, 0)

    def failures(self) -> list[str]:
        found = []
        accepted = self.sent.accepted()
        if accepted < self.sent.sent:
            found.append(f"{self.sent.sent - accepted} POSTs not 201")
        if self.completed < self.sent.sent:
            found.append(f"{self.sent.sent - self.completed} calls not completed normally")
        if self.sipp_exit != 0:
            found.append(f"SIPp exit {self.sipp_exit}")
        if self.sent.lag_p99_ms > SENDER_LAG_MAX_MS:
            found.append(f"sender lag p99 {self.sent.lag_p99_ms:.0f} ms")
        return found


def trunk(tmp: Path, *, calls: int, timeout_sec: int) -> Sipp:
    """SIPp answering ``calls`` calls (both legs of each), A's legs told by ``_IS_A``."""
    text = (SCENARIOS / "answer.xml").read_text()
    assert _IS_A[0] in text, "answer.xml no longer tests party A as this probe expects"
    workdir = tmp / f"sipp-{time.monotonic_ns()}"
    workdir.mkdir()
    scenario = workdir / "answer-pairs.xml"
    scenario.write_text(text.replace(*_IS_A))
    return Sipp(
        # An absolute path: Sipp reads it (SCENARIOS / an absolute path is that path).
        str(scenario),
        workdir,
        calls=2 * calls,
        pause_ms=TALK_MS,
        variables={"aport": str(free_udp_port()), "bport": str(free_udp_port())},
        fill={
            "A_ANSWERED": fragment("send_bye"),
            "B_ANSWERED": fragment("wait_bye"),
            "B_BEFORE_ANSWER": "",
        },
        timeout_sec=timeout_sec,
    )


def timed_gaps(log: str) -> tuple[list[float], int]:
    """From SIPp's message trace: (A's 200 sent → B's INVITE received) for each call of
    the load (not the warm-up's), paired by the call's i (A_FROM + i, B_FROM + i); and
    how many of the load's A legs were answered and saw no B."""
    answered: dict[int, float] = {}
    gaps: list[float] = []
    parts = _STAMP.split(log)
    for stamp, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = body.lstrip("\n").splitlines()
        if len(lines) < 3:
            continue
        direction, first = lines[0], lines[2]
        if direction.startswith("UDP message sent") and first.startswith("SIP/2.0 200"):
            to_a = _TO_A.search(body)
            if to_a is not None and int(to_a[1]) >= A_FROM:
                answered.setdefault(int(to_a[1]) - A_FROM, _epoch(stamp))
        elif direction.startswith("UDP message received") and first.startswith("INVITE"):
            to_b = _INVITE_B.match(first)
            if to_b is not None and int(to_b[1]) - B_FROM in answered:
                gaps.append(_epoch(stamp) - answered.pop(int(to_b[1]) - B_FROM))
    return gaps, len(answered)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


async def _outcomes(database_url: str, *, within: float) -> Counter[str]:
    """Every call's ``status/cause``, once none is live (or ``within`` has passed)."""
    db = Database(database_url, pool_size=1)
    deadline = time.monotonic() + within
    try:
        while True:
            async with db.read() as session:
                rows = (
                    await session.execute(
                        select(Call.status, Call.hangup_cause, func.count()).group_by(
                            Call.status, Call.hangup_cause
                        )
                    )
                ).all()
            found: Counter[str] = Counter({f"{s}/{c}": int(n) for s, c, n in rows})
            live = sum(n for key, n in found.items() if key.split("/")[0] in LIVE_STATUSES)
            if live == 0 or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.5)
    finally:
        await db.dispose()


def _groups(running: Running, sipp: Sipp) -> dict[str, Callable[[], list[int]]]:
    groups: dict[str, Callable[[], list[int]]] = {
        role: functools.partial(list, [process.pid]) for role, process in running.processes.items()
    }
    if running.database_url.startswith("postgresql"):
        database = running.database_url.rpartition("/")[2]
        groups["PostgreSQL"] = lambda: pids_with_cmdline("postgres: ", f" {database} ")
        groups["Redis"] = lambda: pids_with_cmdline("redis-server")
    groups["SIPp"] = functools.partial(list, [sipp.process.pid])
    groups["SIP process"] = lambda: pids_with_cmdline("maskline.telephony.sip.child")
    return groups


def trial(
    kind: str,
    rate: float,
    seconds: float,
    *,
    profile: bool = False,
    sip_process: int | None = None,
    sipp_priority: int = 0,
    max_cps: int = UNPACED_CPS,
) -> Trial:
    """``rate`` calls a second for ``seconds`` on a fresh start of the set-up ``kind``."""
    _name, profiled_role, setup = SETUPS[kind]
    warm = round(WARMUP_RATE * WARMUP_SEC)
    calls = round(rate * seconds)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sipp = trunk(tmp, calls=warm + calls, timeout_sec=int(seconds + DRAIN_SEC) + 120)
        try:
            if sipp_priority:
                # SIPp is the trunk and the network: with a real-time SIP process on the
                # same two cores, it is given a real-time priority too, so that it is
                # neither starved (its socket overflowed) nor late to stamp its messages.
                os.sched_setscheduler(sipp.process.pid, os.SCHED_RR, os.sched_param(sipp_priority))
            with setup(tmp, _sip_env(sipp.trunk, sip_process, max_cps)) as running:
                targets, key = running.addresses, running.key
                finish(
                    start_open_loop(
                        targets, key, rate=WARMUP_RATE, seconds=WARMUP_SEC,
                        first_party=WARMUP_B_FROM, party_a_from=WARMUP_A_FROM,
                    ),
                    WARMUP_SEC,
                )  # fmt: skip
                warm_outcomes = asyncio.run(_outcomes(running.database_url, within=DRAIN_SEC))
                engine_url = running.base_urls[profiled_role]
                connect_before = _connect_buckets(engine_url)
                sampler = Sampler(_groups(running, sipp))
                sampler.start()
                sender = start_open_loop(
                    targets, key, rate=rate, seconds=seconds,
                    first_party=B_FROM, party_a_from=A_FROM,
                )  # fmt: skip
                spy: threading.Thread | None = None
                output = tmp / f"sip-{kind}-{rate:g}.txt"
                spy_sec = min(PROFILE_SEC, max(1.0, seconds - 10))
                if profile:
                    pid = running.processes[profiled_role].pid

                    def record() -> None:
                        time.sleep(5)
                        py_spy_record(pid, output, seconds=spy_sec)

                    spy = threading.Thread(target=record)
                    spy.start()
                sent = finish(sender, seconds)
                usage, machine = sampler.stop()
                if spy is not None:
                    spy.join()
                outcomes = asyncio.run(_outcomes(running.database_url, within=DRAIN_SEC))
                connect = {
                    le: n - connect_before.get(le, 0)
                    for le, n in _connect_buckets(engine_url).items()
                }
                try:
                    code: int | None = asyncio.run(sipp.finished(within=DRAIN_SEC))
                except TimeoutError:
                    code = None
                errors = "" if code == 0 else sipp.errors()[:600]
        finally:
            sipp.close()
        gaps, unmatched = timed_gaps(sipp.log.read_text(errors="replace"))
        found = summary(read_collapsed(output), seconds=spy_sec) if profile else ""
    return Trial(
        sent=sent,
        outcomes=dict(outcomes - warm_outcomes),
        sipp_exit=code,
        sipp_errors=errors,
        gaps=gaps,
        unmatched=unmatched,
        usage=usage,
        machine_percent=machine,
        profile=found,
        engine_connect=connect,
    )


def _connect_buckets(base_url: str) -> dict[float, int]:
    """The engine's connect histogram so far, from its /metrics: calls by bucket bound."""
    text = httpx.get(f"{base_url}/metrics", timeout=30).raise_for_status().text
    return {
        float(sample.labels["le"]): int(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "maskline_connect_latency_seconds_bucket"
    }


def _engine_connect(t: Trial) -> str:
    """Where the engine's own connect falls: the share within a few bounds, and the
    bounds p50 and p99 fall under."""
    counts = t.engine_connect
    total = counts.get(float("inf"), 0)
    if not total:
        return "no connect measured by the engine"
    bounds = sorted(le for le in counts if le != float("inf"))

    def under(q: float) -> str:
        for le in bounds:
            if counts[le] >= q * total:
                return f"≤ {le * 1000:g} ms"
        return f"> {bounds[-1] * 1000:g} ms"

    shown = [le for le in bounds if le in (0.001, 0.005, 0.025, 0.1)]
    shares = ", ".join(f"≤ {le * 1000:g} ms {counts[le] / total:.1%}" for le in shown)
    return f"n={total}: {shares}; p50 {under(0.5)}, p99 {under(0.99)}"


def _row(t: Trial) -> str:
    ms = [g * 1000 for g in t.gaps]
    failed = {k: n for k, n in t.outcomes.items() if k != GOOD}
    failures = ", ".join(t.failures())
    return (
        f"| {t.sent.rate:g} | {t.sent.sent} | {t.sent.accepted()} "
        f"| {t.sent.latency_p50_ms:.0f} ms | {t.sent.latency_p99_ms:.0f} ms "
        f"| {t.completed} | {failed or 0} | {t.sipp_exit} "
        f"| {percentile(ms, 0.5):.2f} ms | {percentile(ms, 0.99):.2f} ms "
        f"| {max(ms, default=float('nan')):.2f} ms | {len(ms)} / {t.unmatched} "
        f"| {t.sent.lag_p99_ms:.1f} ms | {'no: ' + failures if failures else 'yes'} |"
    )


def _usage_row(t: Trial) -> str:
    cells = " | ".join(u.cell() for u in t.usage.values())
    sender = 100 * t.sent.cpu_sec / t.sent.seconds
    return f"| {t.sent.rate:g} | {cells} | {sender:.0f}% | {t.machine_percent:.0f}% |"


def table(title: str, trials: list[Trial]) -> str:
    processes = list(trials[0].usage) if trials else []
    lines = [
        title,
        "",
        "| offered/s | placed | 201 | POST p50 | POST p99 | completed/NORMAL_CLEARING "
        "| other outcomes | SIPp exit | connect p50 | connect p99 | connect max "
        "| connect n / A without B | sender lag p99 | holds |",
        "|" + " ---: |" * 13 + " --- |",
        *(_row(t) for t in trials),
        "",
        "CPU (100 % a core) and peak memory of each process over the load (RSS; PSS summed "
        "for several processes)",
        "",
        f"| offered/s | {' | '.join(processes)} | sender | machine |",
        "| ---: |" + " ---: |" * (len(processes) + 2),
        *(_usage_row(t) for t in trials),
    ]
    lines += [
        "",
        "The engine's own connect (A's 200 OK taken in by its SIP stack → B's INVITE handed "
        "to the socket, its `maskline_connect_latency_seconds`), against the wire's above:",
        "",
        *(f"- {t.sent.rate:g}/s: {_engine_connect(t)}" for t in trials),
    ]
    errors = [f"- {t.sent.rate:g}/s: SIPp {t.sipp_errors}" for t in trials if t.sipp_errors.strip()]
    return "\n".join([*lines, *(["", *errors] if errors else [])])


def sip_rate(
    kind: str,
    *,
    rates: tuple[float, ...] = RATES,
    seconds: float = STEP_SEC,
    hold: float = HOLD_SEC,
    profile: bool = False,
    sip_process: int | None = None,
    sipp_priority: int = 0,
    max_cps: int = UNPACED_CPS,
) -> str:
    name, profiled_role, _setup = SETUPS[kind]
    where = (
        "SIP in the engine"
        if sip_process is None
        else f"SIP in its own process (real-time priority {sip_process})"
    ) + (f", SIPp at real-time priority {sipp_priority}" if sipp_priority else "")
    where += f", MASKLINE_SIP_MAX_CPS={max_cps}"
    run = functools.partial(
        trial, kind, sip_process=sip_process, sipp_priority=sipp_priority, max_cps=max_cps
    )
    conditions = (
        f"{where}; SIPp answers both legs after 100 ms, {TALK_MS} ms talk, A hangs up; "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    trials: list[Trial] = []
    for rate in rates:
        trials.append(run(rate, seconds))
        print(f"{kind}: {_row(trials[-1])}", flush=True)
    parts = [table(f"SIP, {name}: open-loop POSTs, {seconds:g} s a rate ({conditions})", trials)]
    held = [t.sent.rate for t in trials if not t.failures()]
    parts.append(
        f"highest rate that holds for {seconds:g} s on {kind}: "
        + (f"{max(held):g} calls/s" if held else "none")
    )
    if hold and held:
        confirmed: list[Trial] = []
        for rate in sorted(held, reverse=True)[:2]:
            confirmed.append(run(rate, hold))
            print(f"{kind}: {_row(confirmed[-1])}", flush=True)
            if not confirmed[-1].failures():
                break
        parts.append(table(f"Held {hold:g} s on a fresh start ({conditions})", confirmed))
        holding = [t.sent.rate for t in confirmed if not t.failures()]
        parts.append(
            f"held for {hold:g} s on {kind}: "
            + (f"{holding[0]:g} calls/s" if holding else "none of the best two")
        )
    if profile:
        top = max(rates)
        profiled = run(top, seconds, profile=True)
        parts.append(
            f"py-spy on the {profiled_role} process at {top:g}/s ({_row(profiled)}):\n\n"
            + profiled.profile
        )
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kinds", nargs="*", help=f"{' and/or '.join(SETUPS)} (default: both)")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES))
    parser.add_argument("--seconds", type=float, default=STEP_SEC, help="a rate's run")
    parser.add_argument("--hold", type=float, default=HOLD_SEC, help="the best rate's; 0: none")
    parser.add_argument("--profile", action="store_true", help="py-spy the engine process")
    parser.add_argument(
        "--sip-process",
        type=int,
        metavar="PRIORITY",
        help="the SIP stack in a process of its own at this real-time priority (0: none)",
    )
    parser.add_argument(
        "--sipp-priority",
        type=int,
        default=0,
        metavar="PRIORITY",
        help="SIPp (the trunk) at this real-time priority (0: none)",
    )
    parser.add_argument(
        "--max-cps",
        type=int,
        default=UNPACED_CPS,
        help=f"MASKLINE_SIP_MAX_CPS (default {UNPACED_CPS}: new legs are not paced)",
    )
    args = parser.parse_args()
    rates = tuple(float(r) for r in args.rates.split(","))
    kinds = args.kinds or list(SETUPS)
    if unknown := set(kinds) - set(SETUPS):
        parser.error(f"no set-up {', '.join(sorted(unknown))}: {' or '.join(SETUPS)}")
    print(f"# maskline SIP rate, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()}")
    for kind in kinds:
        print(
            sip_rate(
                kind,
                rates=rates,
                seconds=args.seconds,
                hold=args.hold,
                profile=args.profile,
                sip_process=args.sip_process,
                sipp_priority=args.sipp_priority,
                max_cps=args.max_cps,
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
