"""Request budgets on a moving window of whole seconds (SPEC §7).

A budget counts its requests per second of the clock; the window is the last
``WINDOW_SEC`` seconds, so a request leaves it between 59 and 60 s after it was made.
One draw reads the counts, drops the ones that left, counts the request if it fits and
answers everything the headers need, in one step: in this process's memory, or, when
``MASKLINE_REDIS_URL`` is set (so that every API process draws on the same budget), in
one Lua script on Redis (one round trip). The two run the same rule (``_draw`` and
``DRAW_SCRIPT``) and are tested alike.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import cast

import coredis
from cachetools import TTLCache

from maskline.kit.clock import Clock

WINDOW_SEC = 60
# Budgets counted at once in one process's memory, the least recently used dropped
# first past it (that budget starts whole again).
MEMORY_BUDGETS = 100_000

# KEYS: the budgets' hashes of counts by second, in the order drawn. ARGV: now in ms,
# window in s, then each budget's limit. Returns, for each draw in turn, {counted (1/0),
# requests in the window, newest second, second whose leaving lets one more in (-1 if
# one fits now)}, flat. Each draw mirrors ``_draw``; a budget drawn twice sees its first
# draw in its second.
DRAW_SCRIPT = """
local now_ms = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local current = math.floor(now_ms / 1000)
local first = current - window + 1
local answers = {}
for k = 1, #KEYS do
  local limit = tonumber(ARGV[k + 2])
  local flat = redis.call('HGETALL', KEYS[k])
  local seconds, counts, gone = {}, {}, {}
  local total = 0
  for i = 1, #flat, 2 do
    local second = tonumber(flat[i])
    if second < first then
      gone[#gone + 1] = flat[i]
    else
      local n = tonumber(flat[i + 1])
      seconds[#seconds + 1] = second
      counts[second] = n
      total = total + n
    end
  end
  if #gone > 0 then
    redis.call('HDEL', KEYS[k], unpack(gone))
  end
  local counted = 0
  if total < limit then
    counted = 1
    total = total + 1
    if counts[current] == nil then
      seconds[#seconds + 1] = current
      counts[current] = 0
    end
    counts[current] = counts[current] + 1
    redis.call('HINCRBY', KEYS[k], current, 1)
    redis.call('PEXPIRE', KEYS[k], window * 1000)
  end
  table.sort(seconds)
  local newest = seconds[#seconds] or -1
  local free = -1
  local excess = total - limit + 1
  for _, second in ipairs(seconds) do
    if excess <= 0 then
      break
    end
    excess = excess - counts[second]
    free = second
  end
  answers[#answers + 1] = counted
  answers[#answers + 1] = total
  answers[#answers + 1] = newest
  answers[#answers + 1] = free
end
return answers
"""


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


def _draw(counts: dict[int, int], *, limit: int, now_ms: int) -> tuple[bool, int, int, int]:
    """``DRAW_SCRIPT`` on one budget's counts by second, changed in place."""
    current = now_ms // 1000
    first = current - WINDOW_SEC + 1
    for second in [s for s in counts if s < first]:
        del counts[second]
    total = sum(counts.values())
    counted = total < limit
    if counted:
        total += 1
        counts[current] = counts.get(current, 0) + 1
    seconds = sorted(counts)
    newest = seconds[-1] if seconds else -1
    free = -1
    excess = total - limit + 1
    for second in seconds:
        if excess <= 0:
            break
        excess -= counts[second]
        free = second
    return counted, total, newest, free


def _seconds_until(second: int, now_ms: int) -> int:
    """Whole seconds from ``now_ms`` until the requests of ``second`` leave the window."""
    return math.ceil(((second + WINDOW_SEC) * 1000 - now_ms) / 1000)


def _budget(
    *, limit: int, now_ms: int, counted: bool, total: int, newest: int, free: int
) -> Budget:
    return Budget(
        allowed=counted,
        limit=limit,
        remaining=max(0, limit - total),
        # Whole again when the newest request leaves: 60 s after a counted one.
        reset_sec=max(0, _seconds_until(newest, now_ms)) if newest >= 0 else 0,
        # One more fits when enough of the oldest requests have left.
        retry_after_sec=max(1, _seconds_until(free, now_ms)) if free >= 0 else 1,
    )


@dataclass(eq=False, slots=True)
class _Draw:
    key: str
    limit: int
    # Counted, total, newest, free (as ``_draw``), and the time the draw was made at.
    answer: asyncio.Future[tuple[int, int, int, int, int]]


class RateLimiter:
    """Budgets of ``limit`` requests per ``WINDOW_SEC``, by name, on ``clock``: in Redis
    when ``redis_url`` is given, else in this process's memory.

    On Redis, the draws asked for while one script call is out go together in the next
    (one round trip for all of them, as the database writer batches its units): under
    load, a request's draw costs a share of a round trip; alone, one round trip.
    """

    def __init__(self, redis_url: str | None, *, clock: Clock, namespace: str = "maskline") -> None:
        self._clock = clock
        self._prefix = f"{namespace}:budget:"
        self._pool: coredis.ConnectionPool | None = None
        self._script: coredis.commands.Script[bytes] | None = None
        if redis_url:
            # Our own pool, so that the lifespan can close its connections.
            self._pool = coredis.ConnectionPool.from_url(redis_url)
            client: coredis.Redis[bytes] = coredis.Redis(connection_pool=self._pool)
            # EVALSHA; on NOSCRIPT (a restarted Redis) SCRIPT LOAD and EVALSHA again.
            self._script = client.register_script(DRAW_SCRIPT)
        # A budget whose newest request has left the window is gone (reset on each count).
        self._memory: TTLCache[str, dict[int, int]] = TTLCache(
            MEMORY_BUDGETS, WINDOW_SEC, timer=clock.monotonic
        )
        self._pending: list[_Draw] = []
        self._sender: asyncio.Task[None] | None = None

    async def hit(self, bucket: str, limit: int) -> Budget:
        """Draw one request from ``bucket`` whose budget is ``limit`` a minute."""
        now_ms = int(self._clock.now().timestamp() * 1000)
        if self._script is None:
            counts = self._memory.get(bucket)
            if counts is None:
                counts = {}
            counted, total, newest, free = _draw(counts, limit=limit, now_ms=now_ms)
            if counted:
                self._memory[bucket] = counts
        else:
            loop = asyncio.get_running_loop()
            draw = _Draw(self._prefix + bucket, limit, loop.create_future())
            self._pending.append(draw)
            if self._sender is None or self._sender.done():
                self._sender = loop.create_task(self._send(self._script))
            counted_flag, total, newest, free, now_ms = await draw.answer
            counted = counted_flag == 1
        return _budget(
            limit=limit, now_ms=now_ms, counted=counted, total=total, newest=newest, free=free
        )

    async def _send(self, script: coredis.commands.Script[bytes]) -> None:
        """Send the pending draws, one script call at a time, until none is left."""
        while self._pending:
            draws, self._pending = self._pending, []
            # The clock is read when the call goes out: a draw counts in the second it
            # reaches Redis, as it did when each request made its own call.
            now_ms = int(self._clock.now().timestamp() * 1000)
            try:
                answer = await script(
                    keys=[draw.key for draw in draws],
                    args=[now_ms, WINDOW_SEC, *(draw.limit for draw in draws)],
                )
            except Exception as exc:
                for draw in draws:
                    if not draw.answer.done():
                        draw.answer.set_exception(exc)
                continue
            # A Lua table of numbers comes back as a list of integers.
            flat = cast(list[int], answer)
            for n, draw in enumerate(draws):
                if not draw.answer.done():
                    counted, total, newest, free = flat[4 * n : 4 * n + 4]
                    draw.answer.set_result((counted, total, newest, free, now_ms))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()
