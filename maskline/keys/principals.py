"""Who is calling, and this process's short memory of it.

Authenticating every request against the database is most of a small request's cost.
A key that authenticated is remembered here for at most ``PRINCIPAL_TTL_SEC`` of the
process's clock, keyed by the key's hash: a key revoked or expired anywhere (the CLI,
another API process) is refused everywhere within that time, and the process that
revokes a key forgets it at once. Failures are never remembered, so the memory can
make a key work a little longer, never make a valid key fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cachetools import TTLCache

from maskline.kit.clock import Clock

# How long a key that authenticated is trusted without asking the database again. It
# bounds how late a revocation, and a change to the organisation's terms, takes effect.
PRINCIPAL_TTL_SEC = 1.0
# Keys remembered at once; the least recently used goes first (it is only reloaded).
PRINCIPAL_CACHE_SIZE = 10_000
# last_used_at is a hint for operators, not an audit log: refresh it at most this often
# so that authentication does not turn every read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class CallTerms:
    """The organisation's terms that placing a call needs (``POST /v1/masking/calls``).

    Loaded with the key, so they may be as stale as the key itself (``PRINCIPAL_TTL_SEC``).
    """

    is_sandbox: bool
    rate_paise: int
    pulse_sec: int
    max_live_calls: int


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """What one lookup of a key found: the key's row and its organisation's terms."""

    key_id: str
    org_id: str
    rate_limit: int | None
    terms: CallTerms
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its organisation and the organisation's call terms."""

    key_id: str
    org_id: str
    rate_limit: int | None
    terms: CallTerms
    # Whether this request should refresh the key's last_used_at (``claim_touch`` decides
    # which of several such requests writes it).
    needs_touch: bool


class PrincipalCache:
    """Keys that authenticated in this process, each for at most ``ttl_sec`` of ``clock``;
    and when this process last wrote each key's ``last_used_at``.

    One per running app (it lives on the runtime), so apps and tests never share it.
    Both maps are bounded and expire on the clock.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        ttl_sec: float = PRINCIPAL_TTL_SEC,
        maxsize: int = PRINCIPAL_CACHE_SIZE,
    ) -> None:
        self._clock = clock
        self._grants: TTLCache[str, KeyGrant] = TTLCache(maxsize, ttl_sec, timer=clock.monotonic)
        # A touch older than the resolution no longer matters, so it may be forgotten.
        self._touched: TTLCache[str, datetime] = TTLCache(
            maxsize, LAST_USED_RESOLUTION.total_seconds(), timer=clock.monotonic
        )
        self._loading: dict[str, asyncio.Future[KeyGrant]] = {}

    async def load(self, key_hash: str, find: Callable[[], Awaitable[KeyGrant]]) -> KeyGrant:
        """``find()``'s grant for ``key_hash``: one lookup for all the requests that ask
        for the same key at once (as when its memory expires under load), not one each."""
        pending = self._loading.get(key_hash)
        if pending is None:
            pending = asyncio.ensure_future(find())
            self._loading[key_hash] = pending
            pending.add_done_callback(lambda _done: self._loading.pop(key_hash, None))
        # A request that goes away does not cancel the others' lookup.
        return await asyncio.shield(pending)

    def get(self, key_hash: str) -> KeyGrant | None:
        """The grant remembered for ``key_hash``, if it is younger than the TTL."""
        return self._grants.get(key_hash)

    def remember(self, key_hash: str, grant: KeyGrant) -> None:
        """Remember a grant that has just authenticated a request (never a refused one)."""
        self._grants[key_hash] = grant

    def forget(self, key_hash: str) -> None:
        self._grants.pop(key_hash, None)

    def needs_touch(self, grant: KeyGrant, *, now: datetime) -> bool:
        """Whether neither the stored ``last_used_at`` nor this process's own last touch
        of the key is within ``LAST_USED_RESOLUTION`` of ``now``."""
        seen = [grant.last_used_at, self._touched.get(grant.key_id)]
        last = max((t for t in seen if t is not None), default=None)
        return last is None or now - last >= LAST_USED_RESOLUTION

    def claim_touch(self, key_id: str, *, now: datetime) -> bool:
        """True for the one request of this process that is to write the key's
        ``last_used_at`` now; False to the others within ``LAST_USED_RESOLUTION``."""
        last = self._touched.get(key_id)
        if last is not None and now - last < LAST_USED_RESOLUTION:
            return False
        self._touched[key_id] = now
        return True
