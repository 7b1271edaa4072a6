"""SPEC §3 (v3): call-logs pages by cursor at any depth, ``page`` only within the first
10,000 rows, totals kept or capped at 10,000; stats from the tallies equal a recount;
``maskline calls seed`` writes calls in bulk and refuses a live organisation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from maskline.kit.clock import ScaledClock
from maskline.kit.india import ist_date
from tests.calls.conftest import SPEED, call_settings
from tests.conftest import Cli
from tests.support.api import Api, OrgHandle, running_api
from tests.support.calls import place, wait_for
from tests.support.databases import fresh_database

USE_CURSOR = "Use cursor to page beyond the first 10,000 calls."
NOT_A_CURSOR = "cursor is not a cursor of this list with these filters."


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this module's own: its thousands of seeded calls are old to the
    clocks of other tests (whose retention would spend its batches on them)."""
    with fresh_database(tmp_path_factory.mktemp("db-scale")) as url:
        yield url


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(
        call_settings(database_url, tmp_path / "data"), clock=ScaledClock(SPEED)
    ) as running:
        yield running


async def logs(api: Api, org: OrgHandle, **params: Any) -> Any:
    return await api.client.get("/v1/masking/call-logs", headers=org.auth, params=params)


async def seed(cli: Cli, org: OrgHandle, count: int, *extra: str) -> None:
    seeded = await cli.ok_async("calls", "seed", "--org", org.name, "--count", str(count), *extra)
    assert seeded["seeded"] == count


async def walk(api: Api, org: OrgHandle, **params: Any) -> list[dict[str, Any]]:
    """Every item of the list, following ``meta.next_cursor`` from page 1."""
    items: list[dict[str, Any]] = []
    response = await logs(api, org, **params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["data"])
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            assert body["meta"]["has_more"] is False
            return items
        assert body["meta"]["has_more"] is True
        response = await logs(api, org, cursor=cursor, **params)


def newest_first(items: list[dict[str, Any]]) -> bool:
    times = [item["created_at"] for item in items]
    return times == sorted(times, reverse=True)


class TestCursors:
    async def test_pages_stay_exact_while_new_calls_arrive(self, api: Api) -> None:
        org = await api.make_org(f"cursor-live-{uuid4().hex[:8]}", balance="100", numbers=2)
        first = [
            (await place(api, org, party_a=f"98111000{i:02d}", party_b=f"98222000{i:02d}"))[
                "call_sid"
            ]
            for i in range(5)
        ]
        page = await logs(api, org, per_page=2)
        seen = [item["call_sid"] for item in page.json()["data"]]
        cursor = page.json()["meta"]["next_cursor"]
        later = [
            (await place(api, org, party_a=f"98111001{i:02d}", party_b=f"98333000{i:02d}"))[
                "call_sid"
            ]
            for i in range(3)
        ]
        while cursor is not None:
            page = await logs(api, org, per_page=2, cursor=cursor)
            assert page.status_code == 200, page.text
            seen += [item["call_sid"] for item in page.json()["data"]]
            cursor = page.json()["meta"]["next_cursor"]
        assert seen == list(reversed(first))
        top = await logs(api, org, per_page=3)
        assert [item["call_sid"] for item in top.json()["data"]] == list(reversed(later))
        assert top.json()["meta"]["total"] == 8
        for sid in first + later:
            await wait_for(api, org, sid)

    async def test_a_cursor_is_bound_to_its_filters(self, api: Api, cli: Cli) -> None:
        org = await api.make_org(f"cursor-bound-{uuid4().hex[:8]}", sandbox=True)
        await seed(cli, org, 30)
        cursor = (await logs(api, org, per_page=5, status="completed")).json()["meta"][
            "next_cursor"
        ]
        assert isinstance(cursor, str)
        for params in (
            {"cursor": cursor},
            {"cursor": cursor, "status": "failed"},
            {"cursor": cursor[:-2], "status": "completed"},
            {"cursor": "bm90IGEgY3Vyc29y", "status": "completed"},
        ):
            response = await logs(api, org, **params)
            assert response.status_code == 400
            assert response.json() == {
                "error": {"code": "invalid_request", "message": NOT_A_CURSOR}
            }
        both = await logs(api, org, cursor=cursor, page=2, status="completed")
        assert both.status_code == 400
        assert both.json()["error"]["message"] == "Give page or cursor, not both."
        other = await api.make_org(f"cursor-bound-other-{uuid4().hex[:8]}", sandbox=True)
        assert (await logs(api, other, cursor=cursor, status="completed")).json()["data"] == []


class TestTenThousandRows:
    async def test_page_limit_totals_and_deep_cursors(self, api: Api, cli: Cli) -> None:
        org = await api.make_org(f"ten-thousand-{uuid4().hex[:8]}", sandbox=True)
        await seed(cli, org, 10_050, "--days", "3")
        everything = await logs(api, org, per_page=100)
        meta = everything.json()["meta"]
        assert (meta["total"], meta["total_pages"], meta["total_capped"]) == (10_050, 101, False)

        last_page = await logs(api, org, per_page=100, page=100)
        assert last_page.status_code == 200
        assert len(last_page.json()["data"]) == 100
        for params in ({"per_page": 100, "page": 101}, {"per_page": 1, "page": 10_001}):
            response = await logs(api, org, **params)
            assert response.status_code == 400
            assert response.json() == {"error": {"code": "invalid_request", "message": USE_CURSOR}}

        items = await walk(api, org, per_page=100)
        assert len(items) == 10_050
        assert len({item["call_sid"] for item in items}) == 10_050
        assert newest_first(items)
        # Page 100 by offset is the same rows as the walk's hundredth page.
        assert last_page.json()["data"] == items[9_900:10_000]

        statuses = "completed,failed,no-answer"
        capped = (await logs(api, org, status=statuses)).json()["meta"]
        assert (capped["total"], capped["total_pages"], capped["total_capped"]) == (
            10_000,
            500,
            True,
        )
        no_answer = [item for item in items if item["status"] == "no-answer"]
        failed_or_none = [item for item in items if item["status"] in ("failed", "no-answer")]
        assert 0 < len(no_answer) < len(failed_or_none) < 10_000
        one = (await logs(api, org, status="no-answer")).json()["meta"]
        assert (one["total"], one["total_capped"]) == (len(no_answer), False)
        assert await walk(api, org, status="failed,no-answer", per_page=100) == failed_or_none

        party = items[0]["party_b"]
        theirs = [item for item in items if party in (item["party_a"], item["party_b"])]
        assert await walk(api, org, party=party, per_page=7) == theirs
        agent = items[0]["party_a"]
        calls_of_agent = [item for item in items if agent in (item["party_a"], item["party_b"])]
        completed_of_agent = [c for c in calls_of_agent if c["status"] == "completed"]
        assert (
            await walk(api, org, party=agent, status="completed", per_page=50) == completed_of_agent
        )

        middle = ist_date(datetime.fromisoformat(items[5_000]["created_at"])).isoformat()
        that_day = [
            item
            for item in items
            if ist_date(datetime.fromisoformat(item["created_at"])).isoformat() == middle
        ]
        dated = {"start_date": middle, "end_date": middle}
        assert await walk(api, org, per_page=100, **dated) == that_day
        meta = (await logs(api, org, **dated)).json()["meta"]
        assert meta["total"] == min(len(that_day), 10_000)


class TestStatsTallies:
    async def test_tallies_equal_a_recount(self, api: Api, cli: Cli) -> None:
        org = await api.make_org(
            f"tallies-{uuid4().hex[:8]}", sandbox=True, balance="100", numbers=2
        )
        await seed(cli, org, 3_000, "--days", "10")
        for i in range(3):
            call = await place(api, org, party_a="9811100011", party_b=f"98444000{i:02d}")
            await wait_for(api, org, call["call_sid"])
        today = ist_date(datetime.now(UTC))
        first, last = today - timedelta(days=11), today + timedelta(days=1)
        whole_days = {"start_date": first.isoformat(), "end_date": last.isoformat()}
        # The same calls by a range that does not start at an IST midnight: counted
        # from the calls themselves.
        recount_range = {
            "start_date": f"{first.isoformat()}T00:00:01+05:30",
            "end_date": f"{last.isoformat()}T23:59:59+05:30",
        }
        tallied = await api.client.get("/v1/masking/stats", headers=org.auth, params=whole_days)
        recounted = await api.client.get(
            "/v1/masking/stats", headers=org.auth, params=recount_range
        )
        assert tallied.status_code == recounted.status_code == 200
        fast, exact = tallied.json()["data"], recounted.json()["data"]
        for data in (fast, exact):
            data.pop("start_date")
            data.pop("end_date")
        assert fast == exact
        assert fast["total_calls"] == 3_003
        assert fast["completed"] + fast["failed"] + fast["no_answer"] == 3_003
        assert 0 < fast["no_answer"] < fast["failed"] < fast["completed"]
        assert sum(day["calls"] for day in fast["daily"]) == 3_003


class TestSeed:
    async def test_a_live_organisation_needs_force(self, api: Api, cli: Cli) -> None:
        org = await api.make_org(f"seed-live-{uuid4().hex[:8]}")
        refused = await cli.run_async("calls", "seed", "--org", org.name, "--count", "5")
        assert refused.code == 1
        assert refused.stderr == (
            f"error: {org.name} is a live organisation: seed only a sandbox one, or give --force.\n"
        )
        assert (await logs(api, org)).json()["meta"]["total"] == 0
        await seed(cli, org, 5, "--force")
        listed = await logs(api, org)
        assert listed.json()["meta"]["total"] == 5
        assert {item["status"] for item in listed.json()["data"]} <= {
            "completed",
            "failed",
            "no-answer",
        }
