"""Test databases: a fresh SQLite file or a fresh PostgreSQL database, dropped afterwards.

A migrated database is a copy of one migrated once per test process (a template): a
file copy on SQLite, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL. Migrating each one
cost about 0.3 s of the test process's CPU, and 2.5 s of wall time on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg

from maskline.kit.db import Database
from maskline.kit.migrate import upgrade
from tests.support.waits import eventually_value

KIND = os.environ.get("MASKLINE_TEST_DATABASE", "sqlite")
PG_ADMIN_URL = os.environ.get(
    "MASKLINE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _pg_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def _pg_admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    db = Database(url, pool_size=1)
    try:
        await upgrade(db)
    finally:
        await db.dispose()


def _drop_pg(name: str) -> None:
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class _Templates:
    """This process's migrated template of each kind, made on first use and removed
    when the process exits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, str] = {}

    def get(self, kind: str) -> str:
        """The template's name: a file path (SQLite) or a database name (PostgreSQL)."""
        with self._lock:
            if kind not in self._made:
                self._made[kind] = self._make(kind)
            return self._made[kind]

    def _make(self, kind: str) -> str:
        if kind == "postgresql":
            name = f"maskline_test_template_{uuid.uuid4().hex[:12]}"
            asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
            atexit.register(_drop_pg, name)
            asyncio.run(_migrate(_pg_url(name)))
            return name
        directory = tempfile.mkdtemp(prefix="maskline-template-")
        atexit.register(shutil.rmtree, directory, True)
        path = os.path.join(directory, "template.db")
        # Disposing of the only connection checkpoints the WAL into the file.
        asyncio.run(_migrate(f"sqlite:///{path}"))
        return path


_TEMPLATES = _Templates()


@contextmanager
def fresh_database(
    directory: Path, *, migrate: bool = True, kind: str | None = None
) -> Iterator[str]:
    """Yield the URL of a new, empty database of ``kind`` (default: the kind under test)."""
    kind = kind or KIND
    if kind == "postgresql":
        name = f"maskline_test_{uuid.uuid4().hex[:12]}"
        template = f' TEMPLATE "{_TEMPLATES.get(kind)}"' if migrate else ""
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"{template}'))
        url = _pg_url(name)
    elif kind == "sqlite":
        name = ""
        path = directory / f"maskline-{uuid.uuid4().hex[:8]}.db"
        if migrate:
            shutil.copyfile(_TEMPLATES.get(kind), path)
        url = f"sqlite:///{path}"
    else:
        raise RuntimeError(f"the database kind must be sqlite or postgresql, not {kind!r}")
    try:
        yield url
    finally:
        if name:
            _drop_pg(name)


class HeldWrites:
    """What ``holding_writes`` holds, until ``release()``."""

    def __init__(self, release: Callable[[], Awaitable[None]]) -> None:
        self._release = release
        self.released = False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await self._release()


@asynccontextmanager
async def holding_writes(database_url: str, org_id: str) -> AsyncIterator[HeldWrites]:
    """Hold up the organisation's next money write from outside the app: SQLite's write
    lock (every write waits), or the organisation's wallet row on PostgreSQL (a new
    call's hold waits, after its earlier statements)."""
    if database_url.startswith("sqlite"):
        # In a thread, not on the loop: the app's own write in progress (the loop runs it)
        # must be able to finish while this waits for the lock.
        conn = sqlite3.connect(
            database_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
        )
        await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")

        async def rollback_sqlite() -> None:
            await asyncio.to_thread(conn.execute, "ROLLBACK")

        held = HeldWrites(rollback_sqlite)
        try:
            yield held
        finally:
            await held.release()
            conn.close()
        return
    pg = await asyncpg.connect(database_url)
    transaction = pg.transaction()
    await transaction.start()
    await pg.execute("SELECT 1 FROM wallets WHERE org_id = $1 FOR UPDATE", org_id)
    held = HeldWrites(transaction.rollback)
    try:
        yield held
    finally:
        await held.release()
        await pg.close()


async def waiting_for_locks(database_url: str, count: int, *, within: float = 10.0) -> None:
    """Until ``count`` PostgreSQL backends of this database wait for a lock."""
    conn = await asyncpg.connect(database_url)

    async def waiting() -> int:
        backends: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return backends

    try:
        await eventually_value(
            waiting,
            lambda backends: backends >= count,
            what=f"{count} backends waiting for a lock",
            within=within,
            interval=0.01,
        )
    finally:
        await conn.close()


class AbortedOnce:
    """A PostgreSQL trigger that aborts the first transaction inserting into ``table``
    with SQLSTATE 40001, as PostgreSQL aborts the loser of a serialization conflict;
    later inserts go through. Only for a database of the test's own."""

    def __init__(self, database_url: str, table: str) -> None:
        self._url = database_url
        self._table = table
        self._name = f"abort_once_{table}"

    async def install(self) -> AbortedOnce:
        # A sequence is not rolled back with the transaction that advanced it: it counts
        # the inserts, those of aborted transactions included.
        conn = await asyncpg.connect(self._url)
        try:
            await conn.execute(
                f"""
                CREATE SEQUENCE {self._name};
                CREATE FUNCTION {self._name}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF nextval('{self._name}') = 1 THEN
                        RAISE EXCEPTION 'could not serialize access (test trigger)'
                            USING ERRCODE = 'serialization_failure';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER {self._name} AFTER INSERT ON {self._table}
                    FOR EACH ROW EXECUTE FUNCTION {self._name}();
                """
            )
        finally:
            await conn.close()
        return self

    async def inserts(self) -> int:
        """Rows inserted into the table since ``install``, the aborted one included."""
        conn = await asyncpg.connect(self._url)
        try:
            last: int | None = await conn.fetchval(
                "SELECT last_value FROM pg_sequences WHERE sequencename = $1", self._name
            )
            return last or 0
        finally:
            await conn.close()
