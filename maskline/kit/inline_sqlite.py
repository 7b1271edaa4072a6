"""SQLite connections that run their statements on the event loop's own thread, for the
group writer (``kit/db.py``).

aiosqlite runs each connection in a thread of its own: every statement is a hop to that
thread and a future resolved back on the loop. A write unit makes a few statements that
each take SQLite tens of microseconds; the hop costs more than the statement (queue,
futures, a wake-up of the loop, the GIL passed twice), and on a busy machine the
thread also waits for the CPU. The writer's batches run one after another on one
connection, so they gain nothing from a thread, and lose the hops.

``connect`` gives SQLAlchemy's aiosqlite dialect an object with aiosqlite's interface
whose coroutines finish without suspending: each statement runs where it is awaited. Two
waits would block the loop, and are kept off it:

- the write lock: the connection's busy timeout is 0, and a statement that finds the
  database locked outside a transaction (``BEGIN IMMEDIATE``, while another process or
  connection writes) is tried again after an ``asyncio.sleep``, with backoff, for
  ``busy_timeout_sec``;
- in WAL mode with ``synchronous=NORMAL`` a commit writes to the WAL without fsync;
  only a checkpoint syncs, and SQLite would run one inside the commit that fills the
  WAL past 1,000 pages, on the loop, for as long as the disk takes (a busy disk: tens
  of milliseconds, and the RTP relay on the same loop stalls). The inline connection
  turns that off (``wal_autocheckpoint=0``) and runs a passive checkpoint on a thread
  of its own every ``CHECKPOINT_EVERY`` commits instead. The writer begins no new
  transaction while it runs (the loop goes on): SQLite writes the WAL from its start
  again only when a write begins with every frame checkpointed, and a checkpoint that
  new commits keep overtaking never gets there. Under a steady load the WAL then grew
  without end (712 MB in 45 s at 100 calls a second), and every read searched its
  ever longer index.

Reads stay on aiosqlite's threads: a long query must not stop the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

log = logging.getLogger("maskline.db")
# Commits between two checkpoints on the checkpoint thread (a batch writes a few pages;
# SQLite's own default is a checkpoint per 1,000 pages).
CHECKPOINT_EVERY = 200
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# Waits between tries for the write lock: from 1 ms, doubling to 50 ms.
FIRST_WAIT_SEC = 0.001
MAX_WAIT_SEC = 0.05


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class InlineCursor:
    """aiosqlite's ``Cursor``, run inline."""

    def __init__(self, connection: InlineConnection) -> None:
        self._connection = connection
        self._cursor = connection.raw.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        await self._connection.run(
            lambda: (
                self._cursor.execute(sql)
                if parameters is None
                else self._cursor.execute(sql, parameters)
            )
        )
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        rows = list(parameters)
        await self._connection.run(lambda: self._cursor.executemany(sql, rows))
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Inline:
    """aiosqlite's queue of calls for its thread, which SQLAlchemy's dialect uses to set
    the isolation level: the call is made at once."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:
            future.set_exception(error)


class _Checkpoints:
    """Passive WAL checkpoints, one at a time, on a thread with a connection of its own
    (a passive checkpoint never waits for a reader or a writer)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._running: asyncio.Task[None] | None = None
        self._commits = 0

    def committed(self) -> None:
        self._commits += 1
        if self._commits < CHECKPOINT_EVERY or self._running is not None:
            return
        self._commits = 0
        self._running = asyncio.create_task(asyncio.to_thread(self._checkpoint))
        self._running.add_done_callback(self._done)

    async def settled(self) -> None:
        """Once no checkpoint is running (the writer's wait before a new transaction)."""
        running = self._running
        if running is not None:
            await asyncio.wait({running})

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running = None
        if not task.cancelled() and task.exception() is not None:
            # The next one checkpoints what this one did not; the WAL only grows meanwhile.
            log.warning("WAL checkpoint failed: %s", task.exception())

    def _checkpoint(self) -> None:
        connection = self._connect()
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            connection.close()

    async def close(self) -> None:
        if self._running is not None:
            await asyncio.wait({self._running})


class InlineConnection:
    """aiosqlite's ``Connection``, run inline."""

    def __init__(
        self, raw: sqlite3.Connection, *, busy_timeout_sec: float, checkpoints: _Checkpoints
    ) -> None:
        self.raw = raw
        self.busy_timeout_sec = busy_timeout_sec
        self._checkpoints = checkpoints
        self._tx = _Inline()

    @property
    def _conn(self) -> sqlite3.Connection:
        return self.raw

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self.raw

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    async def run(self, statement: Callable[[], object]) -> None:
        """Run ``statement``; outside a transaction, while the database is locked, try
        again after a pause (the loop goes on meanwhile)."""
        if not self.raw.in_transaction:
            await self._checkpoints.settled()
        deadline = time.monotonic() + self.busy_timeout_sec
        wait = FIRST_WAIT_SEC
        while True:
            try:
                statement()
                return
            except sqlite3.OperationalError as error:
                if self.raw.in_transaction or not _is_busy(error):
                    raise
                if time.monotonic() + wait > deadline:
                    raise
            await asyncio.sleep(wait)
            wait = min(wait * 2, MAX_WAIT_SEC)

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        cursor = self.cursor()
        return await cursor.execute(sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        cursor = self.cursor()
        return await cursor.executemany(sql, parameters)

    async def commit(self) -> None:
        self.raw.commit()
        self._checkpoints.committed()

    async def rollback(self) -> None:
        self.raw.rollback()

    async def close(self) -> None:
        self.raw.close()
        await self._checkpoints.close()

    def stop(self) -> None:
        self.raw.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self.raw.create_function(*args, **kwargs)


def creator(
    args: Sequence[Any], kwargs: Mapping[str, Any], *, busy_timeout_sec: float
) -> Callable[[], Any]:
    """For ``create_async_engine(async_creator=…)``: a new inline connection made with
    ``sqlite3.connect(*args, **kwargs)`` (what the dialect would give aiosqlite), which
    waits for the write lock up to ``busy_timeout_sec``."""

    def checkpointer() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(
            *args, **{**kwargs, "timeout": busy_timeout_sec}
        )
        return connection

    checkpoints = _Checkpoints(checkpointer)

    async def connect() -> InlineConnection:
        raw = sqlite3.connect(*args, **{**kwargs, "timeout": 0, "isolation_level": None})
        raw.execute("PRAGMA wal_autocheckpoint=0")
        # Past a restart, the WAL file is cut back to this size (it is reused, not grown).
        raw.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        return InlineConnection(raw, busy_timeout_sec=busy_timeout_sec, checkpoints=checkpoints)

    return connect
