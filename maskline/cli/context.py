"""One CLI command = one transaction, on the database the settings name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.errors import ConfigurationError
from maskline.kit.clock import Clock, SystemClock
from maskline.kit.crypto import SecretBox, resolve_secret_key
from maskline.kit.db import Database
from maskline.kit.migrate import current_revision, head_revision, upgrade
from maskline.settings import Settings

T = TypeVar("T")


@dataclass
class Command:
    settings: Settings
    db: Database
    clock: Clock

    def box(self) -> SecretBox:
        return SecretBox(resolve_secret_key(self.settings))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.db.write() as session:
            yield session


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
        settings = Settings()
        db = Database(settings.database_url, pool_size=2)
        try:
            if migrate:
                await _ensure_schema(db)
            return await work(Command(settings=settings, db=db, clock=SystemClock()))
        finally:
            await db.dispose()

    return asyncio.run(main())
