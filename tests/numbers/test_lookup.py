"""SPEC §8: the SIP carrier asks, for each INVITE from outside, whether the dialled number
is a masked number; the answer comes from a cached copy of the pool, read again when a
number is missing from it (at most once a second) or when it is a minute old."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from maskline.kit.clock import SystemClock
from maskline.kit.db import Database
from maskline.numbers import lookup, service
from maskline.numbers.lookup import PoolLookup

NUMBER = "917969004401"


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(own_database: str) -> AsyncIterator[Database]:
    database = Database(own_database, pool_size=1)
    yield database
    await database.dispose()


async def _add(db: Database) -> None:
    async with db.write() as session:
        await service.add_numbers(session, [NUMBER], org_id=None, now=SystemClock().now())


async def _remove(db: Database) -> None:
    async with db.write() as session:
        await service.remove_number(session, NUMBER)


async def test_a_number_added_is_found_once_a_second_has_passed_since_the_last_read(
    db: Database,
) -> None:
    ticks = Ticks()
    is_pool_number = PoolLookup(db, monotonic=ticks)
    assert await is_pool_number(NUMBER) is False  # the first read: an empty pool
    await _add(db)
    ticks.now = lookup.MISS_REFRESH_SEC / 2
    assert await is_pool_number(NUMBER) is False  # a miss so soon is not read again
    ticks.now = lookup.MISS_REFRESH_SEC + 0.1
    assert await is_pool_number(NUMBER) is True


async def test_a_number_removed_is_answered_from_the_cache_until_it_is_a_minute_old(
    db: Database,
) -> None:
    ticks = Ticks()
    await _add(db)
    is_pool_number = PoolLookup(db, monotonic=ticks)
    assert await is_pool_number(NUMBER) is True
    await _remove(db)
    ticks.now = lookup.POOL_MAX_AGE_SEC - 1
    assert await is_pool_number(NUMBER) is True  # a hit does not read again
    ticks.now = lookup.POOL_MAX_AGE_SEC + 0.1
    assert await is_pool_number(NUMBER) is False


async def test_a_read_that_fails_leaves_the_last_pool_in_use(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = Ticks()
    await _add(db)
    is_pool_number = PoolLookup(db, monotonic=ticks)
    assert await is_pool_number(NUMBER) is True
    async with db.write() as session:  # every read of the pool now fails
        await session.execute(text("ALTER TABLE masked_numbers RENAME TO masked_numbers_gone"))
    ticks.now = lookup.POOL_MAX_AGE_SEC + 0.1
    assert await is_pool_number(NUMBER) is True
    assert "cannot read the pool numbers; keeping the last ones" in caplog.text
