"""Waiting for something to hold, with a deadline (never a bare sleep).

Every wait checks first and sleeps only between checks, so a condition that already
holds costs no sleep; the last check is made at the deadline, and a timeout fails with
an ``AssertionError`` naming what was waited for, after how long and, where there is
one, the last value seen. Three functions cover every polling loop in the tests:

- ``eventually(check)`` in async tests, for a check answering yes or no;
- ``eventually_value(get, accept)`` in async tests, when the caller wants the value
  that was accepted (the call that reached its status, the rows that settled);
- ``eventually_blocking(get, accept=bool)`` in synchronous tests (subprocesses,
  threads); ``accept`` defaults to truthiness, so it takes a plain check too.

Checks and getters may be synchronous or async; an exception raised by one (an
unexpected status code, a process that died) ends the wait at once.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

INTERVAL = 0.02


def _timed_out(what: str, within: float, last: str | None) -> AssertionError:
    seen = "" if last is None else f"; last seen: {last}"
    return AssertionError(f"still waiting for {what} after {within:g} s{seen}")


def _described(what: str | None, check: Callable[..., Any]) -> str:
    return what if what is not None else getattr(check, "__qualname__", repr(check))


async def _wait(
    get: Callable[[], Any],
    accept: Callable[[Any], object],
    *,
    what: str,
    within: float,
    interval: float,
    show_last: bool,
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = get()
        if inspect.isawaitable(value):
            value = await value
        if accept(value):
            return value
        left = deadline - loop.time()
        if left <= 0:
            raise _timed_out(what, within, repr(value) if show_last else None)
        await asyncio.sleep(min(interval, left))


async def eventually(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    what: str | None = None,
    within: float = 10.0,
    interval: float = INTERVAL,
) -> None:
    """Return once ``check()`` (or ``await check()``) is true; fail once ``within``
    seconds have passed. ``what`` names the condition in the failure."""
    await _wait(
        check,
        bool,
        what=_described(what, check),
        within=within,
        interval=interval,
        show_last=False,
    )


@overload
async def eventually_value(
    get: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    what: str | None = None,
    within: float = 10.0,
    interval: float = INTERVAL,
) -> T: ...


@overload
async def eventually_value(
    get: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    what: str | None = None,
    within: float = 10.0,
    interval: float = INTERVAL,
) -> T: ...


async def eventually_value(
    get: Callable[[], Any],
    accept: Callable[[Any], bool],
    *,
    what: str | None = None,
    within: float = 10.0,
    interval: float = INTERVAL,
) -> Any:
    """The first value of ``get()`` (awaited if async) that ``accept`` takes; fails once
    ``within`` seconds have passed, showing the last value seen."""
    return await _wait(
        get,
        accept,
        what=_described(what, get),
        within=within,
        interval=interval,
        show_last=True,
    )


def eventually_blocking(
    get: Callable[[], T],
    accept: Callable[[T], object] = bool,
    *,
    what: str | None = None,
    within: float = 10.0,
    interval: float = INTERVAL,
) -> T:
    """``eventually_value`` for synchronous tests: the first value of ``get()`` that
    ``accept`` takes (by default, the first true one), blocking the thread between
    checks; fails once ``within`` seconds have passed, showing the last value seen."""
    deadline = time.monotonic() + within
    while True:
        value = get()
        if accept(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timed_out(_described(what, get), within, repr(value))
        time.sleep(min(interval, left))
