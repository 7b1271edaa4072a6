"""The sip carrier alone in a process of its own, against SIPp: the connect latency a SIP
process would give, with nothing else on its loop (issue 14's SIP target).

This process runs the real ``SipCarrier`` with a minimal engine of its own as the sink
(A's answer: B asked for, as the engine does; B's answer: bridged; a hang-up: the other
leg hung up), no database, no writer, no API. It dials A legs open-loop at the rate,
each ``Dial`` carrying B's (``then``), so B's INVITE leaves at A's 200 OK. SIPp is the
trunk as in ``bench/sip_rate.py`` (its ``answer.xml``: both legs answered after 100 ms,
A hangs up ``TALK_MS`` after its answer), and the connect is measured the same way: A's
200 OK sent → B's INVITE received, SIPp's clock.

The process's garbage collector is the variable (``--gc``): Python's defaults, the
server's settings (``gc.freeze()``, ``GC_THRESHOLDS`` and ``SWITCH_INTERVAL_SEC`` of
``maskline.cli.server``), Python's young and middle generations with no automatic
collection of the old one (``young``), or
off for the trial (the cyclic garbage it leaves is counted at the end). Its collections
are timed (``gc.callbacks``). Run it beside another load (``python -m bench.e2e
postgresql --rates 100 --seconds 60 --hold 0`` in another shell) to see a busy
machine's share, and under ``chrt -r 10`` or ``nice -n -10`` for a priority's.

``python -m bench.sip_carrier [--rate 100] [--seconds 30] [--gc default|server|off]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.sip_rate import A_FROM, B_FROM, timed_gaps, trunk
from bench.stats import percentile
from maskline.cli.server import GC_THRESHOLDS, SWITCH_INTERVAL_SEC
from maskline.kit.clock import SystemClock
from maskline.telephony.carrier import Dial
from maskline.telephony.events import Cause, Leg, LegAnswered, LegEvent, LegFailed, LegHungUp
from maskline.telephony.sip.carrier import SipCarrier
from tests.conftest import make_settings
from tests.support.sipp import free_udp_port

CALLER_ID = "918073000001"
DRAIN_SEC = 5.0


class Collections:
    """Every collection of the garbage collector while it is installed: its seconds, and
    the oldest generation it collected."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.generations: list[int] = []
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._began)
            self.generations.append(int(info["generation"]))

    def longest(self, generation: int) -> str:
        pauses = [p for p, g in zip(self.pauses, self.generations, strict=True) if g == generation]
        return f"{len(pauses)} of gen {generation}" + (
            f" (longest {max(pauses) * 1000:.1f} ms)" if pauses else ""
        )


class Engine:
    """What the engine does with the carrier's events, and no more."""

    def __init__(self, carrier: SipCarrier, clock: SystemClock) -> None:
        self.carrier, self.clock = carrier, clock
        self.b_dials: dict[str, Dial] = {}
        self.completed = 0
        self.failed_legs = 0

    def __call__(self, event: LegEvent) -> None:
        sid, now = event.call_sid, self.clock.now()
        if isinstance(event, LegAnswered):
            if event.leg is Leg.A:
                self.carrier.dial(self.b_dials.pop(sid))
            else:
                self.carrier.bridge(sid, at=now, media=None)
        elif isinstance(event, LegHungUp):
            other = Leg.B if event.leg is Leg.A else Leg.A
            self.carrier.hangup(sid, other, cause=Cause.NORMAL_CLEARING, at=now)
            self.completed += event.leg is Leg.A
        elif isinstance(event, LegFailed):
            self.failed_legs += 1


async def trial(tmp: Path, *, rate: float, seconds: float, gc_mode: str) -> str:
    calls = round(rate * seconds)
    sipp = trunk(tmp, calls=calls, timeout_sec=int(seconds + DRAIN_SEC) + 120)
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp / 'unused.db'}",
        tmp / "data",
        carrier="sip",
        sip_trunk=sipp.trunk,
        sip_bind=f"127.0.0.1:{free_udp_port()}",
        # Below the kernel's ephemeral ports, where SIPp's own media ports are picked
        # (``free_udp_port``): a relay port there could be one SIPp's SDP names.
        rtp_ports="10000-19999",
        sip_max_cps=10_000,
    )
    clock = SystemClock()

    async def no_pool_number(_number: str) -> bool:
        return False

    carrier = SipCarrier(settings, clock, is_pool_number=no_pool_number)
    engine = Engine(carrier, clock)
    collections = Collections()
    try:
        await carrier.start(engine)
        if gc_mode == "server":
            # As ``maskline serve`` sets them.
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            sys.setswitchinterval(SWITCH_INTERVAL_SEC)
        elif gc_mode == "young":
            # Python's young and middle generations, no automatic old one.
            gc.set_threshold(700, 10, 1_000_000)
        elif gc_mode == "off":
            gc.disable()
        gc.callbacks.append(collections)
        loop = asyncio.get_running_loop()
        began, cpu = loop.time(), time.process_time()
        for i in range(calls):
            wait = began + i / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            sid, now = f"CA{i:08d}", clock.now()
            b = Dial(sid, Leg.B, str(B_FROM + i), CALLER_ID, now)
            engine.b_dials[sid] = b
            carrier.dial(Dial(sid, Leg.A, str(A_FROM + i), CALLER_ID, now, then=b))
        # Over the load only: the calls' last legs end during the drain below.
        cpu_percent = 100 * (time.process_time() - cpu) / (loop.time() - began)
        await asyncio.sleep(DRAIN_SEC)
        gc.callbacks.remove(collections)  # the count below is not the trial's
        left = gc.collect() if gc_mode == "off" else 0
        code = await sipp.finished(within=60)
    finally:
        sys.setswitchinterval(0.005)
        if collections in gc.callbacks:
            gc.callbacks.remove(collections)
        gc.enable()
        await carrier.close()
        sipp.close()
    gaps, unmatched = timed_gaps(sipp.log.read_text(errors="replace"))
    ms = sorted(g * 1000 for g in gaps)
    long = [p for p in collections.pauses if p > 0.005]
    return (
        f"| {rate:g} | {gc_mode} | {code} | {engine.completed} / {calls} | "
        f"{engine.failed_legs} | {percentile(ms, 0.5):.2f} / {percentile(ms, 0.99):.2f} / "
        f"{(ms[-1] if ms else float('nan')):.2f} ms | {len(ms)} / {unmatched} | "
        f"{cpu_percent:.0f}% | {len(collections.pauses)}, {len(long)} over 5 ms: "
        f"{', '.join(collections.longest(g) for g in range(3))} | "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB"
        + (f", {left} objects in unreachable cycles" if gc_mode == "off" else "")
        + " |"
    )


HEADER = (
    "| rate/s | collector | SIPp exit | completed | failed legs | connect p50 / p99 / max "
    "| connect n / A without B | CPU over the load | collections | peak RSS |\n"
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--gc", choices=("default", "server", "young", "off"), default="server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        row = uvloop.run(trial(Path(tmp), rate=args.rate, seconds=args.seconds, gc_mode=args.gc))
    print(HEADER)
    print(row)


if __name__ == "__main__":
    main()
