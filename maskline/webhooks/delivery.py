"""One delivery attempt: check the destination, sign, POST, and judge the answer (SPEC §6)."""

from __future__ import annotations

import asyncio
import random
import time
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


async def attempt(
    client: httpx.AsyncClient,
    *,
    url: str,
    body: bytes,
    msg_id: str,
    secrets: list[str],
    timestamp: int,
    allow_private: bool,
    now: datetime,
) -> AttemptResult:
    started = time.perf_counter()

    def elapsed() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        destination = await ssrf.resolve(url, allow_private=allow_private)
    except ssrf.RefusedDestination as exc:
        return AttemptResult(False, None, f"refused: {exc.message}"[:300], elapsed())
    headers = signed_headers(secrets=secrets, msg_id=msg_id, timestamp=timestamp, body=body)
    headers["Host"] = destination.host_header
    headers["User-Agent"] = "maskline-webhooks/1"
    # Only the status and Retry-After count: the body is never read (nor unzipped), so
    # a receiver cannot make the worker hold more than the headers and one socket read.
    headers["Accept-Encoding"] = "identity"
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
            # Leaving the block unread closes the connection rather than draining it.
            status_code = response.status_code
            retry_after = _retry_after(response, now)
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


def new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(TIMEOUT_SEC), follow_redirects=False, trust_env=False
    )
