"""Time comes from an injected clock so that the sim and the tests can scale it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current UTC time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (for timers)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def rfc3339(moment: datetime | None) -> str | None:
    """``2026-05-11T08:30:00Z``: UTC, whole seconds (SPEC §1)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


class ScaledClock:
    """A clock that runs ``factor`` times faster than the wall clock (sim and tests)."""

    def __init__(self, factor: float, *, start: datetime | None = None) -> None:
        if factor <= 0:
            raise ValueError("the clock factor must be positive")
        self.factor = factor
        self._start_wall = start or datetime.now(UTC)
        self._start_mono = time.monotonic()

    def now(self) -> datetime:
        return self._start_wall + timedelta(seconds=self.monotonic())

    def monotonic(self) -> float:
        return (time.monotonic() - self._start_mono) * self.factor

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)


async def sleep_until(clock: Clock, deadline: datetime) -> None:
    """Sleep on ``clock`` until ``deadline`` (at once if it has passed)."""
    await clock.sleep((deadline - clock.now()).total_seconds())
