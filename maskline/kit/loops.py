"""Background loops that stop between iterations, never in the middle of one.

Cancelling a task while it is inside a database transaction is unsafe: the
driver's thread finishes the statement after the task is gone, and a
``BEGIN IMMEDIATE`` that completes that way holds SQLite's write lock with
nobody left to release it. So a loop is asked to stop, finishes the iteration
it is in, and exits; cancellation is only the last resort after a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from maskline.kit.clock import Clock

Body = Callable[[], Awaitable[bool]]
STOP_TIMEOUT_SEC = 30.0


class Loops:
    """A set of named loops sharing one wake-up event and one stop signal.

    A body returns True when it has more work at once; otherwise the loop pauses
    for ``every`` seconds (of the clock, or real seconds for a wakeable loop,
    which ``wake()`` cuts short). A wakeable loop given ``settle`` runs at most one
    woken iteration per ``settle`` seconds: a wake-up sooner than that after the last
    iteration began waits out the rest, so that a stream of wake-ups (one per
    committed event, say) is served by one iteration for many, at a delay of at most
    ``settle``.
    """

    def __init__(self, clock: Clock, log: logging.Logger) -> None:
        self._clock = clock
        self._log = log
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(
        self, name: str, body: Body, every: float, *, wakeable: bool = False, settle: float = 0.0
    ) -> None:
        self._tasks.append(asyncio.create_task(self._run(name, body, every, wakeable, settle)))

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Ask every loop to stop after its current iteration, and wait for them."""
        self._stopping.set()
        if not self._tasks:
            return
        _, late = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SEC)
        for task in late:
            self._log.error("a background loop did not stop in time; cancelling it")
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(
        self, name: str, body: Body, every: float, wakeable: bool, settle: float
    ) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time() - settle
        more = True
        while not self._stopping.is_set():
            rest = began + settle - loop.time()
            if not more and rest > 0:
                # Woken (or the poll came round) soon after the last iteration began.
                await asyncio.sleep(rest)
            if wakeable:
                self._wake.clear()
            began = loop.time()
            try:
                more = await body()
            except Exception:
                self._log.exception("%s failed; retrying", name)
                more = False
            if not more:
                await self._pause(every, wakeable)

    async def _pause(self, seconds: float, wakeable: bool) -> None:
        waits: list[Coroutine[Any, Any, object]] = [self._stopping.wait()]
        if wakeable:
            waits.append(self._wake.wait())
        else:
            waits.append(self._clock.sleep(seconds))
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(
                tasks,
                timeout=seconds if wakeable else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
