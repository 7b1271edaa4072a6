"""The CPU of one webhook attempt (``delivery.attempt``) on a kept-alive connection to
nginx answering 204 (``bench/nginx.py``): sequentially, and with 16 at once (an
endpoint's lane). The figure is this process's CPU time (user and system) per attempt,
not wall time: the machine is shared, and nginx's own CPU is not ours.

Each way is run in turn, alternately, in the same window (``ROUNDS`` times), so that a
change in the machine's load shows as spread rather than as a difference: ``attempt``
(what the worker does: aiohttp for HTTP/1.1) against the same POST through an httpcore
pool on ``webhooks/network.py`` (what an attempt was before aiohttp, and what carries
HTTP/2 now), its answer drained the same way.

``python -m bench.webhook_attempt [attempts]``
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpcore
import uvloop

from bench.nginx import nginx_receiver
from maskline.webhooks import delivery
from maskline.webhooks.network import AsyncioNetwork
from maskline.webhooks.signing import signed_headers
from maskline.webhooks.ssrf import HostResolver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - SPEC §6's test vector
BODY = b'{"event":"call.initiated","data":{"call_sid":"x"}}' * 5
WARMUP = 50
ROUNDS = 3
WAYS = ("attempt (aiohttp)", "httpcore pool, asyncio network")


async def _measure(url: str, attempts: int, at_once: int, way: str) -> tuple[float, float]:
    """CPU ms per attempt: (user + system, system)."""
    clients = delivery.Clients()
    resolver = HostResolver(now=time.time)
    pool = httpcore.AsyncConnectionPool(max_connections=16, network_backend=AsyncioNetwork())

    async def one() -> None:
        now = datetime.now(UTC)
        if way == WAYS[1]:
            headers = signed_headers(
                secrets=[SECRET], msg_id="evt_1", timestamp=int(now.timestamp()), body=BODY
            )
            async with pool.stream("POST", url, content=BODY, headers=list(headers.items())) as r:
                async for _ in r.aiter_stream():
                    pass
                assert r.status == 204, r
            return
        result = await delivery.attempt(
            clients,
            url=url,
            body=BODY,
            msg_id="evt_1",
            secrets=[SECRET],
            timestamp=int(now.timestamp()),
            allow_private=True,
            now=now,
            resolver=resolver,
        )
        assert result.ok, result

    slots = asyncio.Semaphore(at_once)

    async def in_slot() -> None:
        async with slots:
            await one()

    try:
        for _ in range(WARMUP):
            await one()
        before = resource.getrusage(resource.RUSAGE_SELF)
        if at_once == 1:
            for _ in range(attempts):
                await one()
        else:
            await asyncio.gather(*(in_slot() for _ in range(attempts)))
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await clients.aclose()
        await pool.aclose()
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    return (user + system) * 1000 / attempts, system * 1000 / attempts


def attempt_cpu(attempts: int = 3000) -> str:
    lines = [
        f"## One webhook attempt's CPU, {attempts} attempts per run, {ROUNDS} rounds "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| way | at once | CPU ms per attempt (median, min–max) | of which system |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp, nginx_receiver(Path(tmp)) as nginx:
        url = nginx.url("attempt")
        for at_once in (1, 16):
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in WAYS}
            for _ in range(ROUNDS):
                for name in WAYS:
                    runs[name].append(uvloop.run(_measure(url, attempts, at_once, name)))
            for name, got in runs.items():
                total = [cpu for cpu, _ in got]
                system = statistics.median(sys_cpu for _, sys_cpu in got)
                lines.append(
                    f"| {name} | {at_once} | {statistics.median(total):.3f} "
                    f"({min(total):.3f}–{max(total):.3f}) | {system:.3f} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    print(attempt_cpu(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
