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

import httpx

from maskline.webhooks import ssrf
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


def _retry_after(response: httpx.Response, now: datetime) -> timedelta | None:
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("retry-after", "").strip()
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
    """A keep-alive HTTP client per destination: its scheme, host and port, and the
    checked address (SPEC §6). A connection is only ever reused for the host whose
    name its TLS session was opened for, and a host whose DNS answer changed gets a
    new client for the new (checked) address: nothing reaches an address that was not
    checked for the attempt. The least recently used destinations are closed past
    ``DESTINATIONS``.

    ``transport``, for the tests only, replaces the network of every client.
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._clients: OrderedDict[tuple[str, str, int, str], httpx.AsyncClient] = OrderedDict()

    async def for_destination(self, destination: ssrf.Destination) -> httpx.AsyncClient:
        key = (destination.scheme, destination.host, destination.port, destination.address)
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        while len(self._clients) >= DESTINATIONS:
            _, oldest = self._clients.popitem(last=False)
            await oldest.aclose()
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(TIMEOUT_SEC),
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
            limits=httpx.Limits(
                max_connections=CONNECTIONS_PER_DESTINATION,
                max_keepalive_connections=CONNECTIONS_PER_DESTINATION,
                keepalive_expiry=KEEPALIVE_SEC,
            ),
        )
        self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.aclose()


async def _drain(response: httpx.Response) -> None:
    """Read what is left of a short answer, so that its connection can be used again.
    The status is already known: a body that is long, slow or cut off only closes the
    connection (leaving the stream before the body's end does)."""
    read = 0
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(DRAIN_SEC):
            async for chunk in response.aiter_raw():
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
    client = await clients.for_destination(destination)
    try:
        async with (
            asyncio.timeout(TIMEOUT_SEC),
            client.stream(
                "POST",
                destination.connect_url,
                content=body,
                headers=headers,
                extensions={"sni_hostname": destination.host},
            ) as response,
        ):
            status_code = response.status_code
            retry_after = _retry_after(response, now)
            await _drain(response)
    except (TimeoutError, httpx.TimeoutException):
        return AttemptResult(False, None, "timed out after 10 s", elapsed())
    except httpx.HTTPError as exc:
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
