"""Database engines, read sessions and the group-commit writer.

SQLite has one writer. Write transactions start with ``BEGIN IMMEDIATE`` so
that a transaction holds the write lock from its first statement: two money
transactions can never interleave, and no transaction fails half-way when it
upgrades from a read lock. Read sessions use a deferred ``BEGIN`` and, thanks
to WAL, never block writers.

Every write goes through ``Database.transaction``, which hands it to the
process's ``GroupWriter`` (``kit/writer.py``): many units of work share one
transaction and one commit, each in a savepoint of its own. On PostgreSQL, a
unit that the database aborts (a deadlock, a serialization failure) through
no fault of its own runs again from the start.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import URL, Connection, Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from maskline.errors import ConfigurationError
from maskline.kit import inline_sqlite
from maskline.kit.writer import GroupWriter
from maskline.settings import database_url

T = TypeVar("T")

SQLITE_MIN_VERSION = (3, 35, 0)
SQLITE_BUSY_TIMEOUT_MS = 15_000
_WRITE_OPTION = "maskline_write"
# Batchers side by side on PostgreSQL, each on a connection of its own (SQLite: one).
# One: a batch costs its round trips whatever its size, and a second batcher halves the
# batch (docs/decisions.md, "A batch's new calls leased together").
PG_BATCHERS = 1

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_setup(busy_timeout_ms: int) -> Callable[[Any, ConnectionPoolEntry], None]:
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the driver: we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def _on_sqlite_begin(conn: Connection) -> None:
    if conn.get_execution_options().get(_WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def check_sqlite_version() -> None:
    if sqlite3.sqlite_version_info < SQLITE_MIN_VERSION:
        raise ConfigurationError(
            f"SQLite {sqlite3.sqlite_version} is too old: maskline needs 3.35 or newer (RETURNING)"
        )


def create_engine(url: str | URL, *, pool_size: int = 10) -> AsyncEngine:
    full = database_url(url)
    if full.get_backend_name() == "sqlite":
        check_sqlite_version()
        engine = create_async_engine(full, pool_size=pool_size, max_overflow=10)
        event.listen(engine.sync_engine, "connect", _sqlite_setup(SQLITE_BUSY_TIMEOUT_MS))
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
        return engine
    return create_async_engine(full, pool_size=pool_size, max_overflow=10)


def _inline_write_engine(reads: AsyncEngine) -> AsyncEngine | None:
    """SQLite's writer's engine: connections that run on the loop's thread
    (``kit/inline_sqlite.py``) to the file ``reads`` reads; None for a database in
    memory, which only its own connections see."""
    url = reads.url
    if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
        return None
    args, kwargs = reads.dialect.create_connect_args(url)
    engine = create_async_engine(
        url,
        async_creator=inline_sqlite.creator(
            args, kwargs, busy_timeout_sec=SQLITE_BUSY_TIMEOUT_MS / 1000
        ),
        pool_size=2,
        max_overflow=2,
    )
    # The busy timeout is 0: InlineConnection waits for the lock without blocking the loop.
    event.listen(engine.sync_engine, "connect", _sqlite_setup(0))
    event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
    return engine


class Database:
    """Owns the engine; hands out sessions whose transaction the caller's edge owns."""

    def __init__(self, url: str | URL, *, pool_size: int = 10) -> None:
        """``url``: ``Settings.database_url`` (a plain URL string is taken too)."""
        self.url = database_url(url)
        self.engine = create_engine(self.url, pool_size=pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._inline = _inline_write_engine(self.engine) if self.is_sqlite else None
        write_engine = (self._inline or self.engine).execution_options(**{_WRITE_OPTION: True})
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(write_engine, expire_on_commit=False)
        self.writer = GroupWriter(
            write_engine,
            batchers=1 if self.is_sqlite else PG_BATCHERS,
            # SQLite has one writer: this process's batches never race each other for
            # the lock (the busy timeout still arbitrates between processes).
            turn=asyncio.Lock() if self.is_sqlite else None,
        )

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        """Every engine this database's sessions use: the reads' and, on SQLite, the
        writer's (for whoever watches the statements sent)."""
        return (self.engine,) if self._inline is None else (self.engine, self._inline)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work: a deferred transaction, ended when the session closes.

        Closing (rather than rolling back) keeps the loaded objects usable afterwards.
        """
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction of its own, outside the writer's batches: for schema
        changes and tests. Committed when the block ends, rolled back on error."""
        async with self._write() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    async def transaction(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, transient: bool = False
    ) -> T:
        """Run ``work`` as one write unit of work and return its result once committed.

        ``work`` runs in a batch of the process's writer (``kit/writer.py``), in a
        savepoint, on a session of its own; a failure of ``work`` rolls back its own
        writes only and is raised here. When the database aborts it for a deadlock or
        a serialization failure, it runs again from the start (at most five runs in
        all); so ``work`` must do nothing but database work (no network call, no
        change to memory that a second run would repeat, no wait for another unit).
        With ``transient``, a lost connection or a busy database (SQLite's write lock
        after its timeout) met before the commit runs it again too; one met during
        the commit does not, since the commit may have landed.
        """
        return cast(T, await self.writer.run(work, transient=transient))

    async def dispose(self) -> None:
        await self.writer.stop()
        if self._inline is not None:
            await self._inline.dispose()
        await self.engine.dispose()
