"""The leases' planner statistics follow the number of live calls (PostgreSQL): a plan
made while the table was nearly empty would read all of it for every new call's lease."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from maskline.kit.clock import SystemClock
from maskline.kit.db import Database
from maskline.numbers import pool, service
from tests.conftest import make_settings
from tests.support.api import running_api
from tests.support.waits import eventually

NUMBER = "917969004402"


async def _lease(db: Database, first: int, count: int) -> None:
    async with db.write() as session:
        await session.execute(
            text("INSERT INTO number_leases (number, party, call_sid) VALUES (:n, :p, :s)"),
            [
                {"n": NUMBER, "p": f"{9000000000 + i}", "s": f"sid-{i // 2}"}
                for i in range(first, first + count)
            ],
        )


async def _counted(db: Database, counted: int) -> int:
    async with db.write() as session:
        return await pool.refresh_lease_statistics(session, counted)


async def _planner_rows(db: Database) -> float:
    async with db.read() as session:
        rows = await session.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = 'number_leases'")
        )
        return float(rows.scalar_one())


@pytest.mark.postgres_only
async def test_the_leases_are_analysed_when_their_number_changed_by_half(
    own_database: str,
) -> None:
    db = Database(own_database, pool_size=1)
    try:
        async with db.write() as session:
            await service.add_numbers(session, [NUMBER], org_id=None, now=SystemClock().now())
        await _lease(db, 0, 99)
        # Fewer than 100 changed: nothing analysed yet.
        assert await _counted(db, 0) == 0
        await _lease(db, 99, 201)
        assert await _counted(db, 0) == 300
        assert await _planner_rows(db) == 300
        # 100 more is not half of 300: the statistics stay as they were.
        await _lease(db, 300, 100)
        assert await _counted(db, 300) == 300
        assert await _planner_rows(db) == 300
        await _lease(db, 400, 50)
        assert await _counted(db, 300) == 450
        assert await _planner_rows(db) == 450
        # Calls ending count too.
        async with db.write() as session:
            await session.execute(text("DELETE FROM number_leases"))
        assert await _counted(db, 450) == 0
        assert await _planner_rows(db) == 0
    finally:
        await db.dispose()


async def test_sqlite_keeps_no_row_counts_to_refresh(own_database: str) -> None:
    db = Database(own_database, pool_size=1)
    try:
        if not db.is_sqlite:
            pytest.skip("SQLite's planner")
        async with db.write() as session:
            await service.add_numbers(session, [NUMBER], org_id=None, now=SystemClock().now())
        await _lease(db, 0, 300)
        assert await _counted(db, 7) == 7
    finally:
        await db.dispose()


@pytest.mark.postgres_only
async def test_the_engine_refreshes_them_as_leases_come(own_database: str, tmp_path: Path) -> None:
    # A database of its own: the count must be this test's leases alone.
    async with running_api(make_settings(own_database, tmp_path / "data")) as api:
        db = api.runtime.db
        async with db.write() as session:
            await service.add_numbers(session, [NUMBER], org_id=None, now=SystemClock().now())
        await _lease(db, 0, 240)

        async def analysed() -> bool:
            return await _planner_rows(db) == 240

        # The engine looks every 2 s.
        await eventually(analysed, what="number_leases analysed with 240 rows", within=15)
