"""Request budgets on a moving window (SPEC §7), backed by the `limits` library.

In memory for one process; in Redis when ``MASKLINE_REDIS_URL`` is set, so
that every API process draws on the same budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import coredis
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

WINDOW_SEC = 60


@dataclass(frozen=True, slots=True)
class Budget:
    """The outcome of drawing one request from a budget."""

    allowed: bool
    limit: int
    remaining: int
    reset_sec: int
    retry_after_sec: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_sec),
        }


class RateLimiter:
    def __init__(self, redis_url: str | None = None, *, namespace: str = "maskline") -> None:
        storage: Storage
        # Our own pool, so that the lifespan can close its connections.
        self._pool: coredis.ConnectionPool | None = None
        if redis_url:
            self._pool = coredis.ConnectionPool.from_url(redis_url)
            # limits types its options as scalars, but passes the pool through to coredis.
            storage = RedisStorage("async+redis://", connection_pool=self._pool)  # type: ignore[arg-type]
        else:
            storage = MemoryStorage()
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._namespace = namespace

    async def hit(self, bucket: str, limit: int) -> Budget:
        """Draw one request from ``bucket`` whose budget is ``limit`` a minute."""
        item = RateLimitItemPerMinute(limit, namespace=self._namespace)
        allowed = await self._limiter.hit(item, bucket)
        stats = await self._limiter.get_window_stats(item, bucket)
        # When the oldest request in the window leaves it, one more fits.
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        # A request was just counted, so the budget is whole one window from now;
        # a refused request was not counted, so it is whole when the newest leaves,
        # at most one window from now.
        return Budget(
            allowed=allowed,
            limit=limit,
            remaining=max(0, stats.remaining),
            reset_sec=WINDOW_SEC,
            retry_after_sec=retry_after,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()
