"""One CLI command = one transaction (run again if PostgreSQL aborts it), on the database
the settings name."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.errors import ConfigurationError
from maskline.kit.clock import Clock, SystemClock
from maskline.kit.crypto import SecretBox, resolve_secret_key
from maskline.kit.db import Database
from maskline.kit.migrate import current_revision, head_revision, upgrade
from maskline.settings import Settings, load_settings

T = TypeVar("T")
THREAD_STOP_SEC = 5.0


@dataclass
class Command:
    settings: Settings
    db: Database
    clock: Clock

    def box(self) -> SecretBox:
        return SecretBox(resolve_secret_key(self.settings))

    async def run_transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run the command's change as one write transaction, run again from the start
        when PostgreSQL aborts it for a deadlock (``Database.transaction``): ``work``
        does database work only. A failure reaches ``main`` for its one-line message."""
        return await self.db.transaction(work)


async def _ensure_schema(db: Database) -> None:
    """Embedded SQLite upgrades itself; PostgreSQL must have been migrated by the operator."""
    if db.is_sqlite:
        await upgrade(db)
        return
    if await current_revision(db) != head_revision():
        raise ConfigurationError("the database schema is not current: run 'maskline migrate'")


def run(work: Callable[[Command], Awaitable[T]], *, migrate: bool = True) -> T:
    """Run one command's work with its own database connection, then close it."""

    async def main() -> T:
        settings = load_settings()
        db = Database(settings.database_url, pool_size=2)
        try:
            if migrate:
                await _ensure_schema(db)
            return await work(Command(settings=settings, db=db, clock=SystemClock()))
        finally:
            await db.dispose()
            await _sqlite_threads_stopped()

    return asyncio.run(main())


async def _sqlite_threads_stopped() -> None:
    """Wait for aiosqlite's connection threads to end while the loop still runs.

    A connection that failed to open (a bad path) is stopped from its own thread,
    which then reports to the loop: after ``asyncio.run`` has closed the loop it
    prints "Exception in thread …" on stderr, a second line after our one.
    """
    for thread in threading.enumerate():
        if thread.name.endswith("(_connection_worker_thread)"):
            await asyncio.to_thread(thread.join, THREAD_STOP_SEC)
