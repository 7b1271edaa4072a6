"""Issue 7's figure: connect latency on the wire, A's 200 OK → B's INVITE, against SIPp.

SIPp is the trunk and logs every message with its own clock, so both ends of
the gap are timestamped by the same process: the moment it sent A's 200 OK and
the moment B's INVITE reached it.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.calls import SECRET, unlimited_org
from bench.stats import summary_ms
from maskline.app import create_app
from maskline.settings import Settings
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
        rtp_ports="30000-39999",
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
