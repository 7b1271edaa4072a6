"""One delivery attempt: check the destination, sign, POST, and judge the answer (SPEC §6)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpcore
import httpx

from maskline.webhooks import ssrf
from maskline.webhooks.network import AsyncioNetwork
from maskline.webhooks.signing import signed_headers

TIMEOUT_SEC = 10.0
# Delays before attempts 2..8 (attempt 1 goes at once); then the delivery has failed.
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.10
# A receiver's Retry-After is honoured up to the schedule's longest delay.
MAX_RETRY_AFTER = max(RETRY_DELAYS)
# Kept-alive connections per destination (the worker sends at most this many at once
# to one endpoint), how long an idle one is kept, and how many destinations are kept.
CONNECTIONS_PER_DESTINATION = 16
KEEPALIVE_SEC = 30.0
DESTINATIONS = 512
# Of an answer's body, at most this much is read (raw, never unzipped) so that its
# connection can be used again; past it, the connection is closed instead.
MAX_BODY_READ = 64 * 1024
DRAIN_SEC = 1.0
_TIMEOUTS = dict.fromkeys(("connect", "read", "write", "pool"), TIMEOUT_SEC)
# What the network or the receiver can make an attempt end with (but a timeout).
TRANSPORT_ERRORS = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    status_code: int | None
    error: str | None
    latency_ms: int
    retry_after: timedelta | None = None

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def _header(response: httpcore.Response, name: bytes) -> str:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _retry_after(status_code: int, value: str, now: datetime) -> timedelta | None:
    if status_code not in (429, 503):
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        # Clamped as a number first: a timedelta of 10**14 seconds overflows, and a
        # string of thousands of digits is past what int() converts (or any delay).
        longest = int(MAX_RETRY_AFTER.total_seconds())
        seconds = longest if len(value) > len(str(longest)) else min(int(value), longest)
        return timedelta(seconds=seconds)
    try:
        delay = parsedate_to_datetime(value) - now
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(delay, timedelta(0)), MAX_RETRY_AFTER)


class Clients:
    """A keep-alive connection pool per destination: its scheme, host and port, and
    the checked address (SPEC §6). A connection is only ever reused for the host whose
    name its TLS session was opened for, and a host whose DNS answer changed gets a
    new pool for the new (checked) address: nothing reaches an address that was not
    checked for the attempt. The least recently used destinations are closed past
    ``DESTINATIONS``. httpcore (httpx's own transport) without httpx's client on top:
    an attempt needs no cookies, redirects, auth or decoding.

    HTTP/2 is used where a receiver offers it over TLS (ALPN), one multiplexed
    connection then carrying the destination's attempts; plain ``http://`` stays
    HTTP/1.1 (no h2c). Either way the connection goes to the checked address, with the
    host's name as the TLS server name and as ``Host`` (HTTP/2's ``:authority``).

    ``ca_file`` adds trusted CA certificates (``Settings.webhook_ca_file``);
    ``network``, for the tests only, replaces the network under every pool.
    """

    def __init__(
        self,
        *,
        ca_file: Path | None = None,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._network = network or AsyncioNetwork()
        self._ssl = httpx.create_ssl_context()
        if ca_file is not None:
            self._ssl.load_verify_locations(cafile=ca_file)
        self._pools: OrderedDict[tuple[str, str, int, str], httpcore.AsyncConnectionPool]
        self._pools = OrderedDict()

    async def for_destination(self, destination: ssrf.Destination) -> httpcore.AsyncConnectionPool:
        key = (destination.scheme, destination.host, destination.port, destination.address)
        pool = self._pools.get(key)
        if pool is not None:
            self._pools.move_to_end(key)
            return pool
        while len(self._pools) >= DESTINATIONS:
            _, oldest = self._pools.popitem(last=False)
            await oldest.aclose()
        pool = httpcore.AsyncConnectionPool(
            ssl_context=self._ssl,
            max_connections=CONNECTIONS_PER_DESTINATION,
            max_keepalive_connections=CONNECTIONS_PER_DESTINATION,
            keepalive_expiry=KEEPALIVE_SEC,
            network_backend=self._network,
            http2=True,
        )
        self._pools[key] = pool
        return pool

    async def aclose(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.aclose()


async def _drain(response: httpcore.Response) -> None:
    """Read what is left of a short answer, so that its connection can be used again.
    The status is already known: a body that is long, slow or cut off only closes the
    connection (leaving the stream before the body's end does)."""
    read = 0
    with contextlib.suppress(TimeoutError, *TRANSPORT_ERRORS):
        async with asyncio.timeout(DRAIN_SEC):
            async for chunk in response.aiter_stream():
                read += len(chunk)
                if read > MAX_BODY_READ:
                    return


async def attempt(
    clients: Clients,
    *,
    url: str,
    body: bytes,
    msg_id: str,
    secrets: list[str],
    timestamp: int,
    allow_private: bool,
    now: datetime,
    resolver: ssrf.HostResolver | None = None,
) -> AttemptResult:
    started = time.perf_counter()

    def elapsed() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        destination = await ssrf.resolve(url, allow_private=allow_private, resolver=resolver)
    except ssrf.RefusedDestination as exc:
        return AttemptResult(False, None, f"refused: {exc.message}"[:300], elapsed())
    headers = signed_headers(secrets=secrets, msg_id=msg_id, timestamp=timestamp, body=body)
    headers["Host"] = destination.host_header
    headers["User-Agent"] = "maskline-webhooks/1"
    # Only the status and Retry-After count: the body is read raw (never unzipped) and
    # only up to MAX_BODY_READ, so that a short answer leaves its connection reusable.
    headers["Accept-Encoding"] = "identity"
    headers["Content-Length"] = str(len(body))
    pool = await clients.for_destination(destination)
    try:
        async with (
            asyncio.timeout(TIMEOUT_SEC),
            pool.stream(
                "POST",
                destination.connect_url,
                content=body,
                headers=list(headers.items()),
                extensions={"sni_hostname": destination.host, "timeout": _TIMEOUTS},
            ) as response,
        ):
            status_code = response.status
            retry_after = _retry_after(status_code, _header(response, b"retry-after"), now)
            await _drain(response)
    except (TimeoutError, httpcore.TimeoutException):
        return AttemptResult(False, None, "timed out after 10 s", elapsed())
    except TRANSPORT_ERRORS as exc:
        return AttemptResult(False, None, f"{exc.__class__.__name__}: {exc}"[:300], elapsed())
    ok = 200 <= status_code < 300
    error = None if ok else f"HTTP {status_code}"
    return AttemptResult(ok, status_code, error, elapsed(), retry_after)


def next_attempt_at(
    attempts_made: int, now: datetime, retry_after: timedelta | None
) -> datetime | None:
    """When to try again after ``attempts_made`` failed attempts, or None when done."""
    if attempts_made >= MAX_ATTEMPTS:
        return None
    if retry_after is not None:
        return now + retry_after
    delay = RETRY_DELAYS[attempts_made - 1]
    return now + delay * random.uniform(1 - JITTER, 1 + JITTER)
