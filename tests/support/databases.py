"""Test databases: a fresh SQLite file or a fresh PostgreSQL database, dropped afterwards."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from maskline.kit.db import Database
from maskline.kit.migrate import upgrade

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


@contextmanager
def fresh_database(
    directory: Path, *, migrate: bool = True, kind: str | None = None
) -> Iterator[str]:
    """Yield the URL of a new, empty database of ``kind`` (default: the kind under test)."""
    kind = kind or KIND
    if kind == "postgresql":
        name = f"maskline_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        url = _pg_url(name)
    elif kind == "sqlite":
        name = ""
        url = f"sqlite:///{directory / f'maskline-{uuid.uuid4().hex[:8]}.db'}"
    else:
        raise RuntimeError(f"the database kind must be sqlite or postgresql, not {kind!r}")
    try:
        if migrate:
            asyncio.run(_migrate(url))
        yield url
    finally:
        if name:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
