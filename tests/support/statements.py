"""Watching the SQL a running app sends: for tests that count a loop's statements."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event

from tests.support.api import Api


@contextmanager
def statement_times(api: Api, matches: Callable[[str], bool]) -> Iterator[list[float]]:
    """The loop times at which ``api`` sent a statement that ``matches``, while inside."""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    def seen(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if matches(statement):
            times.append(loop.time())

    engines = [engine.sync_engine for engine in api.runtime.db.engines]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        yield times
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)
