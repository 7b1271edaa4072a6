"""Is this a masked number? The SIP carrier asks for every INVITE from outside (SPEC §8).

The answer comes from a cached set of the pool's numbers, read again when it is older
than ``POOL_MAX_AGE_SEC`` or when a number is missing from it (at most once every
``MISS_REFRESH_SEC``, so a flood of INVITEs to unknown numbers costs one query a
second, not one each). The engine side builds it and hands it to the carrier, so
telephony never opens a database session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from maskline.kit.db import Database
from maskline.numbers.service import all_pool_numbers

log = logging.getLogger("maskline.numbers")

POOL_MAX_AGE_SEC = 60.0
MISS_REFRESH_SEC = 1.0


class PoolLookup:
    """``await lookup(number)``: whether ``number`` (12 digits) is in the pool."""

    def __init__(self, db: Database, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._monotonic = monotonic
        self._pool: frozenset[str] = frozenset()
        self._fetched_at = float("-inf")
        # One read at a time: INVITEs arriving during a read wait for it, not a read each.
        self._reading = asyncio.Lock()

    async def __call__(self, number: str) -> bool:
        if self._stale(number):
            async with self._reading:
                if self._stale(number):  # not read meanwhile by the one we waited for
                    await self._read()
        return number in self._pool

    def _stale(self, number: str) -> bool:
        age = self._monotonic() - self._fetched_at
        return age > POOL_MAX_AGE_SEC or (number not in self._pool and age > MISS_REFRESH_SEC)

    async def _read(self) -> None:
        try:
            async with self._db.read() as session:
                self._pool = await all_pool_numbers(session)
        except Exception:
            # The INVITE is answered from what we knew (480 for a number we never saw),
            # and the next one past MISS_REFRESH_SEC tries the database again.
            log.exception("cannot read the pool numbers; keeping the last ones")
        self._fetched_at = self._monotonic()
