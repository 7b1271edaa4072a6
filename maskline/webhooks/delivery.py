"""One delivery attempt: check the destination, sign, POST, and judge the answer (SPEC §6)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import Callable
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


class Connections:
    """One destination's kept-alive connections, each in an httpcore pool of its own
    (``max_connections=1``), the attempt choosing the first one not in use. httpcore's
    pool, at each request and each answer, looks at every connection it holds and at
    every connection again for each idle one: with 16 in one pool, that was more than
    half of an attempt's CPU at 16 at once (``bench/webhook_attempt.py``).

    Once an answer came over HTTP/2, every attempt goes to that connection's pool,
    multiplexed, until an answer there comes over HTTP/1.1 again (the receiver stopped
    offering h2); the others' connections then expire unused (``KEEPALIVE_SEC``).
    """

    def __init__(self, make_pool: Callable[[], httpcore.AsyncConnectionPool]) -> None:
        self._make_pool = make_pool
        self._pools: list[httpcore.AsyncConnectionPool] = []
        self._in_use: list[int] = []
        self._http2: int | None = None

    def take(self) -> int:
        """The pool (its index) for an attempt; ``give_back`` it after."""
        index = self._http2
        if index is None:
            if 0 in self._in_use:
                index = self._in_use.index(0)
            elif len(self._pools) < CONNECTIONS_PER_DESTINATION:
                index = len(self._pools)
                self._pools.append(self._make_pool())
                self._in_use.append(0)
            else:  # all busy: more than a lane's attempts share this destination
                index = self._in_use.index(min(self._in_use))
        self._in_use[index] += 1
        return index

    def pool(self, index: int) -> httpcore.AsyncConnectionPool:
        return self._pools[index]

    def answered(self, index: int, http_version: bytes) -> None:
        if http_version == b"HTTP/2":
            self._http2 = index
        elif self._http2 == index:
            self._http2 = None

    def give_back(self, index: int) -> None:
        self._in_use[index] -= 1

    async def aclose(self) -> None:
        # The lists stay as they are: an attempt in flight still gives its pool back.
        for pool in self._pools:
            await pool.aclose()


class Clients:
    """Kept-alive connections per destination (``Connections``): its scheme, host and
    port, and the checked address (SPEC §6). A connection is only ever reused for the
    host whose name its TLS session was opened for, and a host whose DNS answer changed
    gets new connections to the new (checked) address: nothing reaches an address that
    was not checked for the attempt. The least recently used destinations are closed
    past ``DESTINATIONS``. httpcore (httpx's own transport) without httpx's client on
    top: an attempt needs no cookies, redirects, auth or decoding; its network is plain
    asyncio (``network.AsyncioNetwork``).

    HTTP/2 is used where a receiver offers it over TLS (ALPN), one multiplexed
    connection then carrying the destination's attempts; plain ``http://`` stays
    HTTP/1.1 (no h2c). Either way the connection goes to the checked address, with the
    host's name as the TLS server name and as ``Host`` (HTTP/2's ``:authority``).

    ``ca_file`` adds trusted CA certificates (``Settings.webhook_ca_file``);
    ``network``, for the tests and benchmarks, replaces the network under every pool.
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
        self._destinations: OrderedDict[tuple[str, str, int, str], Connections]
        self._destinations = OrderedDict()

    def _pool(self) -> httpcore.AsyncConnectionPool:
        return httpcore.AsyncConnectionPool(
            ssl_context=self._ssl,
            max_connections=1,
            max_keepalive_connections=1,
            keepalive_expiry=KEEPALIVE_SEC,
            network_backend=self._network,
            http2=True,
        )

    async def for_destination(self, destination: ssrf.Destination) -> Connections:
        key = (destination.scheme, destination.host, destination.port, destination.address)
        connections = self._destinations.get(key)
        if connections is not None:
            self._destinations.move_to_end(key)
            return connections
        while len(self._destinations) >= DESTINATIONS:
            _, oldest = self._destinations.popitem(last=False)
            await oldest.aclose()
        connections = self._destinations[key] = Connections(self._pool)
        return connections

    async def aclose(self) -> None:
        destinations = list(self._destinations.values())
        self._destinations.clear()
        for connections in destinations:
            await connections.aclose()


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
    connections = await clients.for_destination(destination)
    index = connections.take()
    try:
        async with (
            asyncio.timeout(TIMEOUT_SEC),
            connections.pool(index).stream(
                "POST",
                destination.connect_url,
                content=body,
                headers=list(headers.items()),
                extensions={"sni_hostname": destination.host, "timeout": _TIMEOUTS},
            ) as response,
        ):
            connections.answered(index, response.extensions.get("http_version", b""))
            status_code = response.status
            retry_after = _retry_after(status_code, _header(response, b"retry-after"), now)
            await _drain(response)
    except (TimeoutError, httpcore.TimeoutException):
        return AttemptResult(False, None, "timed out after 10 s", elapsed())
    except TRANSPORT_ERRORS as exc:
        return AttemptResult(False, None, f"{exc.__class__.__name__}: {exc}"[:300], elapsed())
    finally:
        connections.give_back(index)
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
