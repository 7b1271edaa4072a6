"""Database engines and the two kinds of session: read and write.

SQLite has one writer. Write sessions start with ``BEGIN IMMEDIATE`` so that
a transaction holds the write lock from its first statement: two money
transactions can never interleave, and no transaction fails half-way when
it upgrades from a read lock. Read sessions use a deferred ``BEGIN`` and,
thanks to WAL, never block writers.

On PostgreSQL, a transaction that changes several rows can be aborted by the
database (a deadlock, a serialization failure) through no fault of its own:
``Database.transaction`` runs such a unit of work again from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import URL, Connection, Dialect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
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
from maskline.settings import database_url

log = logging.getLogger("maskline.db")
T = TypeVar("T")

SQLITE_MIN_VERSION = (3, 35, 0)
SQLITE_BUSY_TIMEOUT_MS = 15_000
_WRITE_OPTION = "maskline_write"
# PostgreSQL's "deadlock detected" and "could not serialize access": the transaction
# was chosen as the victim and may simply be run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
TRANSACTION_RUNS = 5
# Runs after the first wait up to this many seconds times the run number (random, so
# the transactions that collided do not collide again in step).
RETRY_BACKOFF_SEC = 0.02
MAX_CAUSE_LENGTH = 200

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


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Take transaction control away from the driver: we emit BEGIN ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


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


def is_retryable(exc: BaseException) -> bool:
    """Whether the database aborted the transaction for a deadlock or a serialization failure."""
    return (
        isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES
    )


def cause_of(exc: DBAPIError) -> str:
    """What the database said went wrong, in one line ("deadlock detected",
    "duplicate key value violates unique constraint …"): the driver's message, never
    the statement, its parameters or PostgreSQL's DETAIL (which quotes row values)."""
    source: BaseException = exc.orig if exc.orig is not None else exc
    lines = str(source).strip().splitlines()
    return (lines[0] if lines else source.__class__.__name__)[:MAX_CAUSE_LENGTH]


def create_engine(url: str | URL, *, pool_size: int = 10) -> AsyncEngine:
    full = database_url(url)
    if full.get_backend_name() == "sqlite":
        check_sqlite_version()
        engine = create_async_engine(full, pool_size=pool_size, max_overflow=10)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
        return engine
    return create_async_engine(full, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


class Database:
    """Owns the engine; hands out sessions whose transaction the caller's edge owns."""

    def __init__(self, url: str | URL, *, pool_size: int = 10) -> None:
        """``url``: ``Settings.database_url`` (a plain URL string is taken too)."""
        self.url = database_url(url)
        self.engine = create_engine(self.url, pool_size=pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(write_engine, expire_on_commit=False)
        # SQLite has one writer. Queueing this process's writers here, rather than
        # letting each connection spin in SQLite's busy handler, keeps writes flowing;
        # the busy timeout still arbitrates between processes.
        self._write_turn: asyncio.Lock | contextlib.nullcontext[None] = (
            asyncio.Lock() if self.is_sqlite else contextlib.nullcontext()
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work: a deferred transaction, ended when the session closes.

        Closing (rather than rolling back) keeps the loaded objects usable afterwards.
        """
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write unit of work: committed when the block ends, rolled back on error."""
        async with self._write_turn, self._write() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    async def transaction(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, transient: bool = False
    ) -> T:
        """Run ``work`` as one write unit of work (see ``write``) and return its result.

        When the database aborts it for a deadlock or a serialization failure, it is
        rolled back and run again from the start, up to ``TRANSACTION_RUNS`` times in
        all; so ``work`` must do nothing but database work (no network call, no
        change to memory that a second run would repeat). With ``transient``, a lost
        connection or a busy database (SQLite's write lock after its timeout) met
        before the commit is run again too; one met during the commit is not, since
        the commit may have landed.
        """
        for run in range(1, TRANSACTION_RUNS + 1):
            committing = False
            try:
                async with self.write() as session:
                    result = await work(session)
                    committing = True
                return result
            except DBAPIError as exc:
                again = is_retryable(exc) or (
                    transient
                    and not committing
                    and (
                        exc.connection_invalidated
                        or isinstance(exc, OperationalError | InterfaceError)
                    )
                )
                if run == TRANSACTION_RUNS or not again:
                    raise
                log.info("transaction failed (%s), running it again", cause_of(exc))
            await asyncio.sleep(random.uniform(0, RETRY_BACKOFF_SEC * run))
        raise AssertionError("unreachable: the last run returns or raises")

    async def dispose(self) -> None:
        await self.engine.dispose()
