"""SPEC §3: call-logs (pagination, filters, aliases, bad input, isolation) and stats
with exact figures over a known set of calls across an IST midnight."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from maskline.kit.clock import ScaledClock
from tests.calls.conftest import call_settings
from tests.support.api import Api, OrgHandle, running_api
from tests.support.calls import place, wait_for

# 9 March 2031, 23:50 IST, and 10 March 2031, 00:01 IST.
BEFORE_MIDNIGHT = datetime(2031, 3, 9, 18, 20, tzinfo=UTC)
AFTER_MIDNIGHT = datetime(2031, 3, 9, 18, 31, tzinfo=UTC)


@dataclass
class Dataset:
    org: OrgHandle
    other: OrgHandle
    calls: dict[str, dict[str, Any]]


async def build(database_url: str, tmp_path: Path, name: str) -> Dataset:
    """x: completed (20 s talk), y: A busy — on 9 March IST;
    z: completed at max_duration 94 s, w: A never answers — on 10 March IST."""
    settings = call_settings(database_url, tmp_path / "data")
    calls: dict[str, dict[str, Any]] = {}
    async with running_api(settings, clock=ScaledClock(100, start=BEFORE_MIDNIGHT)) as api:
        org = await api.make_org(name, balance="100", numbers=2)
        other = await api.make_org(f"{name}-other", balance="100", numbers=1)
        calls["x"] = await place(api, org, party_a="9811100011", party_b="9822200022")
        calls["y"] = await place(api, org, party_a="9811100001", party_b="9833300033")
        for key in ("x", "y"):
            calls[key] = await wait_for(api, org, calls[key]["call_sid"])
    long_talk = call_settings(database_url, tmp_path / "data", sim_talk_sec=3600)
    async with running_api(long_talk, clock=ScaledClock(100, start=AFTER_MIDNIGHT)) as api:
        calls["z"] = await place(
            api, org, party_a="9811100011", party_b="9822200022", max_duration_sec=94
        )
        calls["w"] = await place(
            api, org, party_a="9844400000", party_b="9855500055", ring_timeout_sec=10
        )
        for key in ("z", "w"):
            calls[key] = await wait_for(api, org, calls[key]["call_sid"])
        await place(api, other, party_a="9811100011", party_b="9822200022")
    return Dataset(org, other, calls)


@pytest.fixture(scope="module")
def data(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Built once for the module: every test here only reads it."""
    return asyncio.run(build(database_url, tmp_path_factory.mktemp("logs"), "logs-shared"))


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> Any:
    settings = call_settings(database_url, tmp_path / "data")
    # Reads only: no engine of its own, whose clock would disagree with the data's.
    async with running_api(
        settings, clock=ScaledClock(1, start=AFTER_MIDNIGHT), role="api"
    ) as running:
        yield running


async def logs(api: Api, org: OrgHandle, **params: Any) -> Any:
    return await api.client.get("/v1/masking/call-logs", headers=org.auth, params=params)


def sids(response: Any) -> list[str]:
    return [item["call_sid"] for item in response.json()["data"]]


class TestCallLogs:
    async def test_newest_first_in_pages_with_meta(self, api: Api, data: Dataset) -> None:
        c = data.calls
        first = await logs(api, data.org, per_page=3)
        assert first.status_code == 200
        assert sids(first) == [c["w"]["call_sid"], c["z"]["call_sid"], c["y"]["call_sid"]]
        cursor = first.json()["meta"]["next_cursor"]
        assert isinstance(cursor, str)
        assert first.json()["meta"] == {
            "page": 1,
            "per_page": 3,
            "total": 4,
            "total_pages": 2,
            "has_more": True,
            "next_cursor": cursor,
            "total_capped": False,
        }
        second = await logs(api, data.org, per_page=3, page=2)
        assert sids(second) == [c["x"]["call_sid"]]
        assert second.json()["meta"]["has_more"] is False
        assert second.json()["meta"]["next_cursor"] is None
        by_cursor = await logs(api, data.org, per_page=3, cursor=cursor)
        assert sids(by_cursor) == [c["x"]["call_sid"]]
        assert by_cursor.json()["meta"] == {
            "page": None,
            "per_page": 3,
            "total": 4,
            "total_pages": 2,
            "has_more": False,
            "next_cursor": None,
            "total_capped": False,
        }
        item = second.json()["data"][0]
        assert item == c["x"]
        assert (item["id"], item["caller_number"], item["target_number"]) == (
            item["call_sid"],
            item["masked_number"],
            "9811100011",
        )

    async def test_status_filter_takes_one_or_several(self, api: Api, data: Dataset) -> None:
        c = data.calls
        assert sids(await logs(api, data.org, status="completed")) == [
            c["z"]["call_sid"],
            c["x"]["call_sid"],
        ]
        assert sids(await logs(api, data.org, status="failed,no-answer")) == [
            c["w"]["call_sid"],
            c["y"]["call_sid"],
        ]

    async def test_dates_are_ist_days_or_rfc3339_with_aliases(
        self, api: Api, data: Dataset
    ) -> None:
        c = data.calls
        day9 = [c["y"]["call_sid"], c["x"]["call_sid"]]
        day10 = [c["w"]["call_sid"], c["z"]["call_sid"]]
        assert sids(await logs(api, data.org, end_date="2031-03-09")) == day9
        assert sids(await logs(api, data.org, to="2031-03-09")) == day9
        assert sids(await logs(api, data.org, start_date="2031-03-10")) == day10
        assert sids(await logs(api, data.org, **{"from": "2031-03-10"})) == day10
        assert sids(await logs(api, data.org, start_date="2031-03-09T18:30:00Z")) == day10
        assert sids(await logs(api, data.org, end_date="2031-03-09T18:30:00Z")) == day9
        assert (
            sids(
                await logs(
                    api,
                    data.org,
                    start_date="2031-03-10T00:00:00+05:30",
                    end_date="2031-03-10",
                )
            )
            == day10
        )

    async def test_party_matches_a_or_b_after_normalisation(self, api: Api, data: Dataset) -> None:
        c = data.calls
        assert sids(await logs(api, data.org, party="+91 98222-00022")) == [
            c["z"]["call_sid"],
            c["x"]["call_sid"],
        ]
        assert sids(await logs(api, data.org, party="9844400000")) == [c["w"]["call_sid"]]

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            (
                {"status": "done"},
                "status must be one or more of answered, completed, failed, "
                "in-progress, initiated, no-answer, ringing, comma-separated.",
            ),
            ({"start_date": "2031-02-30"}, "start_date is not a valid date."),
            (
                {"end_date": "yesterday"},
                "end_date must be an RFC 3339 date-time or a date (YYYY-MM-DD).",
            ),
            (
                {"start_date": "2031-03-10T00:00:00"},
                "start_date must carry a time zone (Z or an offset).",
            ),
            (
                {"start_date": "2031-03-10", "end_date": "2031-03-09"},
                "end_date must be after start_date.",
            ),
            ({"party": "12345"}, "party must be a 10-digit Indian mobile number."),
            ({"start_date": "0001-01-01"}, "start_date is outside the supported dates."),
            ({"end_date": "9999-12-31"}, "end_date is outside the supported dates."),
            (
                {"start_date": "0001-01-01T00:00:00+05:30"},
                "start_date is outside the supported dates.",
            ),
            (
                {"end_date": "9999-12-31T23:59:59.999999Z"},
                "end_date is outside the supported dates.",
            ),
            ({"per_page": "101"}, "per_page: Input should be less than or equal to 100."),
        ],
    )
    async def test_bad_values_are_400(self, api: Api, params: dict[str, str], message: str) -> None:
        org = await api.make_org(f"logs-bad-{uuid.uuid4().hex[:12]}")
        response = await logs(api, org, **params)
        assert response.status_code == 400
        assert response.json() == {"error": {"code": "invalid_request", "message": message}}

    async def test_another_organisation_sees_only_its_own(self, api: Api, data: Dataset) -> None:
        theirs = await logs(api, data.other)
        assert len(sids(theirs)) == 1
        assert not set(sids(theirs)) & {c["call_sid"] for c in data.calls.values()}


class TestStats:
    async def test_exact_figures_over_two_ist_days(self, api: Api, data: Dataset) -> None:
        response = await api.client.get(
            "/v1/masking/stats",
            headers=data.org.auth,
            params={"start_date": "2031-03-09", "end_date": "2031-03-10"},
        )
        assert response.status_code == 200
        assert response.json()["data"] == {
            "start_date": "2031-03-08T18:30:00Z",
            "end_date": "2031-03-10T18:29:59Z",
            "total_sessions": 4,
            "active_sessions": 0,
            "total_mappings": 3,
            "total_calls": 4,
            "total_minutes": 1.9,
            "total_cost": 4.5,
            "answered_calls": 2,
            "failed_calls": 2,
            "completed": 2,
            "failed": 1,
            "no_answer": 1,
            "in_progress": 0,
            "answer_rate": 0.5,
            "bridge_rate": 0.5,
            "billed_minutes": 3.0,
            "average_talk_sec": 57.0,
            "daily": [
                {
                    "date": "2031-03-09",
                    "calls": 2,
                    "completed": 1,
                    "billed_minutes": 1.0,
                    "cost": 1.5,
                },
                {
                    "date": "2031-03-10",
                    "calls": 2,
                    "completed": 1,
                    "billed_minutes": 2.0,
                    "cost": 3,
                },
            ],
        }

    async def test_the_default_is_the_last_30_ist_days(self, api: Api, data: Dataset) -> None:
        response = await api.client.get("/v1/masking/stats", headers=data.org.auth)
        body = response.json()["data"]
        assert (body["start_date"], body["end_date"]) == (
            "2031-02-08T18:30:00Z",
            "2031-03-10T18:29:59Z",
        )
        assert len(body["daily"]) == 30
        assert body["daily"][0]["date"] == "2031-02-09"
        assert [d["calls"] for d in body["daily"][-2:]] == [2, 2]
        assert body["total_calls"] == 4

    async def test_no_calls_gives_zeros(self, api: Api) -> None:
        org = await api.make_org("stats-empty")
        body = (
            await api.client.get(
                "/v1/masking/stats",
                headers=org.auth,
                params={"from": "2031-03-10", "to": "2031-03-10"},
            )
        ).json()["data"]
        assert (body["total_calls"], body["answer_rate"], body["average_talk_sec"]) == (0, 0, 0)
        assert body["daily"] == [
            {"date": "2031-03-10", "calls": 0, "completed": 0, "billed_minutes": 0, "cost": 0}
        ]

    async def test_only_end_date_gives_the_30_ist_days_ending_it(
        self, api: Api, data: Dataset
    ) -> None:
        response = await api.client.get(
            "/v1/masking/stats", headers=data.org.auth, params={"end_date": "2031-03-09"}
        )
        assert response.status_code == 200
        body = response.json()["data"]
        assert (body["start_date"], body["end_date"]) == (
            "2031-02-07T18:30:00Z",
            "2031-03-09T18:29:59Z",
        )
        assert len(body["daily"]) == 30
        assert (body["daily"][0]["date"], body["daily"][-1]["date"]) == (
            "2031-02-08",
            "2031-03-09",
        )
        assert body["total_calls"] == 2

    async def test_only_an_end_moment_gives_the_30_ist_days_ending_its_day(
        self, api: Api, data: Dataset
    ) -> None:
        # 10 March 2031, 00:00 IST: the 30 days are 9 February to 10 March, up to that moment.
        response = await api.client.get(
            "/v1/masking/stats", headers=data.org.auth, params={"to": "2031-03-09T18:30:00Z"}
        )
        assert response.status_code == 200
        body = response.json()["data"]
        assert body["start_date"] == "2031-02-08T18:30:00Z"
        assert (body["daily"][0]["date"], body["daily"][-1]["date"]) == (
            "2031-02-09",
            "2031-03-10",
        )
        assert len(body["daily"]) == 30
        assert body["total_calls"] == 2

    @pytest.mark.parametrize(
        ("params", "days"),
        [
            # 10 March 2030 to 10 March 2031: 366 calendar days.
            ({"start_date": "2030-03-10", "end_date": "2031-03-10"}, 366),
            # 366 days from 00:00 IST to 00:00 IST: the last one touches a 367th IST day.
            ({"start_date": "2030-03-09T18:30:00Z", "end_date": "2031-03-10T18:30:00Z"}, 367),
        ],
    )
    async def test_a_range_of_366_days_is_answered(
        self, api: Api, data: Dataset, params: dict[str, str], days: int
    ) -> None:
        response = await api.client.get("/v1/masking/stats", headers=data.org.auth, params=params)
        assert response.status_code == 200
        body = response.json()["data"]
        assert body["total_calls"] == 4
        assert len(body["daily"]) == days

    @pytest.mark.parametrize(
        "params",
        [
            {"start_date": "2030-03-09", "end_date": "2031-03-10"},
            {"start_date": "2030-03-09T18:30:00Z", "end_date": "2031-03-10T18:30:01Z"},
            # The request that once froze the server for 25 s with a 277 MB answer.
            {"start_date": "0001-01-02", "end_date": "9999-12-30"},
            # Only start_date: the range ends today (10 March 2031).
            {"start_date": "2030-03-09"},
        ],
    )
    async def test_a_range_longer_than_366_days_is_400(
        self, api: Api, data: Dataset, params: dict[str, str]
    ) -> None:
        response = await api.client.get("/v1/masking/stats", headers=data.org.auth, params=params)
        assert response.status_code == 400
        assert response.json() == {
            "error": {
                "code": "invalid_request",
                "message": "The range from start_date to end_date must be at most 366 days.",
            }
        }
