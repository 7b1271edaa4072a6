"""Watching the SQL a running app sends: for tests that count a loop's statements."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event

from tests.support.api import Api


@contextmanager
def _watching(api: Api, on_statement: Callable[[str], None]) -> Iterator[None]:
    """``on_statement`` is told every statement ``api`` sends to its database while inside."""

    def before(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        on_statement(statement)

    engines = [engine.sync_engine for engine in api.runtime.db.engines]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)


@contextmanager
def statements(api: Api) -> Iterator[list[str]]:
    """Every statement ``api`` sends meanwhile, on one line each."""
    seen: list[str] = []
    with _watching(api, lambda statement: seen.append(" ".join(statement.split()))):
        yield seen


@contextmanager
def statement_times(api: Api, matches: Callable[[str], bool]) -> Iterator[list[float]]:
    """The loop times at which ``api`` sent a statement that ``matches``, while inside."""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    def seen(statement: str) -> None:
        if matches(statement):
            times.append(loop.time())

    with _watching(api, seen):
        yield times
