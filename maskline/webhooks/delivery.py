"""One delivery attempt: check the destination, sign, POST, and judge the answer (SPEC §6)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import aiohttp
import httpcore
import httpx
import yarl

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
# A receiver that answered over HTTP/1.1 is asked again whether it offers HTTP/2 after
# H2_RECHECK_SEC.
CONNECTIONS_PER_DESTINATION = 16
KEEPALIVE_SEC = 30.0
DESTINATIONS = 512
H2_RECHECK_SEC = 600.0
DISCONNECTED = "RemoteProtocolError: Server disconnected without sending a response."
# Of an answer's body, at most this much is read (raw, never unzipped) so that its
# connection can be used again; past it, the connection is closed instead.
MAX_BODY_READ = 64 * 1024
MAX_HEADERS = 64
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


class _Unusable(Exception):
    """An attempt the network or the receiver ended before an answer, in our words
    (``last_error``): the same for either client."""


def _aiohttp_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return DISCONNECTED
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        reason = os.strerror(errno) if errno else str(exc.os_error) or "cannot connect"
        return f"ConnectError: {reason}"
    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp's parser points at the fault on lines of their own ("    ^"): left out.
        lines = (line.strip() for line in exc.message.splitlines())
        return "RemoteProtocolError: " + " ".join(line for line in lines if line.strip("^"))
    if isinstance(exc, aiohttp.ClientOSError):
        errno = exc.errno
        return f"ReadError: {os.strerror(errno) if errno else exc.__class__.__name__}"
    return f"{exc.__class__.__name__}: {' '.join(str(exc).split())}"


class Connections:
    """One destination's kept-alive connections.

    HTTP/1.1 goes through aiohttp (a C parser; its pool keeps up to
    ``CONNECTIONS_PER_DESTINATION`` connections alive, one per attempt at once). On
    ``https`` the receiver may offer HTTP/2, which only httpcore speaks: an attempt to a
    destination whose offer is not known (the first, and again ``H2_RECHECK_SEC`` after
    it was last seen) goes through an httpcore pool that offers h2 over ALPN. An answer
    over HTTP/2 keeps every later attempt on that multiplexed connection; an answer over
    HTTP/1.1 sends them to aiohttp, and the httpcore pool is closed once nothing uses it.
    Plain ``http://`` is HTTP/1.1 (no h2c) and never asks.
    """

    def __init__(
        self,
        destination: ssrf.Destination,
        make_session: Callable[[], aiohttp.ClientSession],
        make_pool: Callable[[], httpcore.AsyncConnectionPool],
        monotonic: Callable[[], float],
    ) -> None:
        self._tls = destination.scheme == "https"
        self._monotonic = monotonic
        self._make_session = make_session
        self._make_pool = make_pool
        self._session: aiohttp.ClientSession | None = None
        self._pool: httpcore.AsyncConnectionPool | None = None
        self._pool_users = 0
        # On https: whether the receiver answered over HTTP/2, and when (monotonic).
        self._http2: bool | None = None
        self._seen_at = 0.0

    def asks_http2(self) -> bool:
        """Whether the next attempt goes through httpcore (h2 offered, or asked about)."""
        if not self._tls:
            return False
        if self._http2 is None:
            return True
        return self._http2 or self._monotonic() - self._seen_at >= H2_RECHECK_SEC

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._make_session()
        return self._session

    def take_pool(self) -> httpcore.AsyncConnectionPool:
        """The httpcore pool for an attempt; ``give_back_pool`` after it."""
        if self._pool is None:
            self._pool = self._make_pool()
        self._pool_users += 1
        return self._pool

    def answered(self, http_version: bytes) -> None:
        self._http2 = http_version == b"HTTP/2"
        self._seen_at = self._monotonic()

    async def give_back_pool(self) -> None:
        self._pool_users -= 1
        if self._pool_users == 0 and self._http2 is False and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.aclose()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        pool, self._pool = self._pool, None
        if session is not None:
            await session.close()
        if pool is not None:
            await pool.aclose()


def _trusting(ca_file: Path | None) -> ssl.SSLContext:
    """A TLS context trusting the default CAs and ``ca_file``'s."""
    context = httpx.create_ssl_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


class Clients:
    """Kept-alive connections per destination (``Connections``): its scheme, host and
    port, and the checked address (SPEC §6). A connection is only ever reused for the
    host whose name its TLS session was opened for, and a host whose DNS answer changed
    gets new connections to the new (checked) address: nothing reaches an address that
    was not checked for the attempt. The least recently used destinations are closed
    past ``DESTINATIONS``.

    Either client connects to the checked address itself (the URL's host is the
    address), with the host's name as the TLS server name and as ``Host`` (HTTP/2's
    ``:authority``); neither follows redirects, keeps cookies or unzips an answer.

    ``ca_file`` adds trusted CA certificates (``Settings.webhook_ca_file``);
    ``network``, for the tests and benchmarks, replaces the network under httpcore's
    pools (``network.AsyncioNetwork``: plain asyncio); ``monotonic``, the clock the
    HTTP/2 recheck runs on.
    """

    def __init__(
        self,
        *,
        ca_file: Path | None = None,
        network: httpcore.AsyncNetworkBackend | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._network = network or AsyncioNetwork()
        self._monotonic = monotonic
        # The same trust in two contexts: httpcore sets ALPN (h2, http/1.1) on the one
        # it is given; aiohttp's offers none, so its connections stay HTTP/1.1.
        self._ssl = _trusting(ca_file)
        self._ssl_http1 = _trusting(ca_file)
        self._destinations: OrderedDict[tuple[str, str, int, str], Connections]
        self._destinations = OrderedDict()

    def _session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=CONNECTIONS_PER_DESTINATION,
            keepalive_timeout=KEEPALIVE_SEC,
            ssl=self._ssl_http1,
            use_dns_cache=False,
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, connect=TIMEOUT_SEC),
            # An answer's head is bounded: at most MAX_HEADERS lines of 8 KiB.
            max_headers=MAX_HEADERS,
        )

    def _pool(self) -> httpcore.AsyncConnectionPool:
        return httpcore.AsyncConnectionPool(
            ssl_context=self._ssl,
            max_connections=CONNECTIONS_PER_DESTINATION,
            max_keepalive_connections=CONNECTIONS_PER_DESTINATION,
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
        connections = Connections(destination, self._session, self._pool, self._monotonic)
        self._destinations[key] = connections
        return connections

    async def aclose(self) -> None:
        destinations = list(self._destinations.values())
        self._destinations.clear()
        for connections in destinations:
            await connections.aclose()


@dataclass(frozen=True, slots=True)
class _Answer:
    status_code: int
    retry_after: str


async def _post_http1(
    connections: Connections, destination: ssrf.Destination, body: bytes, headers: dict[str, str]
) -> _Answer:
    """The POST over aiohttp (HTTP/1.1)."""
    try:
        async with connections.session().post(
            yarl.URL(destination.connect_url, encoded=True),
            data=body,
            headers=headers,
            allow_redirects=False,
            server_hostname=destination.host if destination.scheme == "https" else None,
        ) as response:
            answer = _Answer(response.status, response.headers.get("Retry-After", ""))
            # Read what is left of a short answer, so that its connection can be used
            # again; a body that is long, slow or cut off only closes the connection
            # (leaving it unread does).
            read = 0
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with asyncio.timeout(DRAIN_SEC):
                    while read <= MAX_BODY_READ:
                        chunk = await response.content.readany()
                        if not chunk:
                            break
                        read += len(chunk)
            return answer
    except aiohttp.ClientError as exc:
        raise _Unusable(_aiohttp_error(exc)) from exc


async def _drain(response: httpcore.Response) -> None:
    """Read what is left of a short answer (httpcore), as ``_post_http1`` does."""
    read = 0
    with contextlib.suppress(TimeoutError, *TRANSPORT_ERRORS):
        async with asyncio.timeout(DRAIN_SEC):
            async for chunk in response.aiter_stream():
                read += len(chunk)
                if read > MAX_BODY_READ:
                    return


async def _post_httpcore(
    connections: Connections, destination: ssrf.Destination, body: bytes, headers: dict[str, str]
) -> _Answer:
    """The POST over httpcore, offering HTTP/2 (TLS, ALPN)."""
    pool = connections.take_pool()
    try:
        async with pool.stream(
            "POST",
            destination.connect_url,
            content=body,
            headers=list(headers.items()),
            extensions={"sni_hostname": destination.host, "timeout": _TIMEOUTS},
        ) as response:
            connections.answered(response.extensions.get("http_version", b""))
            answer = _Answer(response.status, _header(response, b"retry-after"))
            await _drain(response)
            return answer
    except TRANSPORT_ERRORS as exc:
        raise _Unusable(f"{exc.__class__.__name__}: {exc}") from exc
    finally:
        await connections.give_back_pool()


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
    post = _post_httpcore if connections.asks_http2() else _post_http1
    try:
        async with asyncio.timeout(TIMEOUT_SEC):
            answer = await post(connections, destination, body, headers)
    except (TimeoutError, httpcore.TimeoutException):
        return AttemptResult(False, None, "timed out after 10 s", elapsed())
    except _Unusable as exc:
        return AttemptResult(False, None, str(exc)[:300], elapsed())
    status_code = answer.status_code
    ok = 200 <= status_code < 300
    error = None if ok else f"HTTP {status_code}"
    retry_after = _retry_after(status_code, answer.retry_after, now)
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
