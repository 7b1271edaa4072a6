"""ARCHITECTURE §3: a write unit of work that PostgreSQL aborts for a deadlock runs again."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.db import Database
from tests.support.databases import KIND


@pytest.mark.skipif(KIND != "postgresql", reason="SQLite's single writer cannot deadlock")
class TestDeadlockRetry:
    async def test_both_sides_of_a_deadlock_commit_once(self, own_database: str) -> None:
        db = Database(own_database, pool_size=2)
        try:
            async with db.write() as session:
                await session.execute(text("CREATE TABLE probe (id int PRIMARY KEY, n int)"))
                await session.execute(text("INSERT INTO probe VALUES (1, 0), (2, 0)"))
            both_hold_one = asyncio.Barrier(2)
            runs: Counter[str] = Counter()

            def crossing(name: str, first: int, second: int) -> Awaitable[None]:
                async def unit(session: AsyncSession) -> None:
                    runs[name] += 1
                    bump = text("UPDATE probe SET n = n + 1 WHERE id = :id")
                    await session.execute(bump, {"id": first})
                    if runs[name] == 1:
                        # Each holds one row and then wants the other's: a deadlock.
                        await both_hold_one.wait()
                    await session.execute(bump, {"id": second})

                return db.transaction(unit)

            await asyncio.gather(crossing("a", 1, 2), crossing("b", 2, 1))
            async with db.read() as session:
                found = await session.execute(text("SELECT id, n FROM probe"))
                rows = {row_id: n for row_id, n in found}
            assert rows == {1: 2, 2: 2}
            # PostgreSQL aborted one of them, which then ran a second time.
            assert sorted(runs.values()) == [1, 2]
        finally:
            await db.dispose()
