"""``maskline calls seed`` (issue 15): a bulk load that leaves the database as real
calls would. A seed at least as large as the table drops the calls' secondary indexes
and foreign keys and makes them again after the load; a smaller one inserts through
them. Either way the schema is the migrations' own afterwards and every tally equals a
recount of the calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text

from maskline.kit.clock import ScaledClock
from maskline.kit.db import Database
from maskline.kit.india import ist_date
from tests.calls.conftest import SPEED, call_settings
from tests.conftest import Cli
from tests.support.api import Api, OrgHandle, running_api
from tests.support.calls import place, wait_for
from tests.support.databases import fresh_database


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this module's own, so that its first seed finds the calls table
    empty (the load that rebuilds the indexes) and its second one does not."""
    with fresh_database(tmp_path_factory.mktemp("db-seed")) as url:
        yield url


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(
        call_settings(database_url, tmp_path / "data"), clock=ScaledClock(SPEED)
    ) as running:
        yield running


async def schema(database_url: str) -> list[tuple[str, ...]]:
    """The calls' and pairs' indexes and constraints, as the database describes them."""
    db = Database(database_url, pool_size=1)
    try:
        async with db.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                rows = await conn.execute(
                    text(
                        "SELECT tablename, indexname, indexdef FROM pg_indexes"
                        " WHERE tablename IN ('calls', 'call_pairs')"
                        " UNION ALL SELECT c.conrelid::regclass::text, c.conname,"
                        " pg_get_constraintdef(c.oid) || CASE WHEN c.convalidated"
                        " THEN '' ELSE ' NOT VALID' END FROM pg_constraint c"
                        " WHERE c.conrelid IN ('calls'::regclass, 'call_pairs'::regclass)"
                        " ORDER BY 1, 2, 3"
                    )
                )
            else:
                rows = await conn.execute(
                    text(
                        "SELECT tbl_name, name, coalesce(sql, '') FROM sqlite_master"
                        " WHERE tbl_name IN ('calls', 'call_pairs') ORDER BY 1, 2"
                    )
                )
            return [tuple(str(value) for value in row) for row in rows]
    finally:
        await db.dispose()


async def stats_both_ways(api: Api, org: OrgHandle) -> tuple[dict[str, Any], dict[str, Any]]:
    """The organisation's stats from the daily tallies (whole IST days) and recounted
    from its calls (a range that does not start at an IST midnight)."""
    today = ist_date(datetime.now(UTC))
    first, last = today - timedelta(days=11), today + timedelta(days=1)
    whole_days = {"start_date": first.isoformat(), "end_date": last.isoformat()}
    recount = {
        "start_date": f"{first.isoformat()}T00:00:01+05:30",
        "end_date": f"{last.isoformat()}T23:59:59+05:30",
    }
    answers = []
    for params in (whole_days, recount):
        response = await api.client.get("/v1/masking/stats", headers=org.auth, params=params)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        data.pop("start_date")
        data.pop("end_date")
        answers.append(data)
    return answers[0], answers[1]


class TestSeed:
    async def test_the_schema_and_tallies_are_as_real_calls_leave_them(
        self, api: Api, cli: Cli, database_url: str
    ) -> None:
        migrated = await schema(database_url)
        assert any(name == "ix_calls_org_party_b" for _, name, _ in migrated)

        big = await api.make_org(f"seed-big-{uuid4().hex[:8]}", sandbox=True)
        seeded = await cli.ok_async(
            "calls", "seed", "--org", big.name, "--count", "3000", "--days", "10"
        )
        assert seeded["seeded"] == 3000
        assert await schema(database_url) == migrated

        small = await api.make_org(
            f"seed-small-{uuid4().hex[:8]}", sandbox=True, balance="100", numbers=1
        )
        await cli.ok_async("calls", "seed", "--org", small.name, "--count", "400", "--days", "10")
        assert await schema(database_url) == migrated
        # A real call after the seed, by one of the seeded pairs: counted once more.
        seeded_call = (
            await api.client.get(
                "/v1/masking/call-logs", headers=small.auth, params={"per_page": 1}
            )
        ).json()["data"][0]
        call = await place(
            api, small, party_a=seeded_call["party_a"], party_b=seeded_call["party_b"]
        )
        await wait_for(api, small, call["call_sid"])

        for org, calls in ((big, 3000), (small, 401)):
            fast, exact = await stats_both_ways(api, org)
            assert fast == exact
            assert fast["total_calls"] == calls
            assert fast["completed"] + fast["failed"] + fast["no_answer"] == calls
            assert 0 < fast["total_mappings"] < calls
            listed = await api.client.get("/v1/masking/call-logs", headers=org.auth)
            assert listed.json()["meta"]["total"] == calls
