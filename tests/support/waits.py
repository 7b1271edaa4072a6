"""Waiting for something to hold, with a deadline (never a bare sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(check: Callable[[], bool], *, within: float = 10.0) -> None:
    """Until ``check()`` holds; fails once ``within`` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, f"still not true after {within} s"
        await asyncio.sleep(0.01)
