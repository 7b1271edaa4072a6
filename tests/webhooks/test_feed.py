"""SPEC §6: the event feed gives every event once, in order, from any cursor."""

from __future__ import annotations

import asyncio
from typing import Any

from maskline.webhooks.tasks import FEED_EVERY_SEC
from tests.support.api import Api, OrgHandle
from tests.support.calls import busy_calls_one_by_one, place, wait_for
from tests.support.statements import statement_times
from tests.support.waits import eventually_value


async def read_feed(api: Api, org: OrgHandle, *, after: str | None, limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        params["after"] = after
    response = await api.client.get("/v1/events", headers=org.auth, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def whole_feed(api: Api, org: OrgHandle, *, expect: int) -> list[dict[str, Any]]:
    """Follow next_cursor in pages of 2 until ``expect`` events were read."""
    seen: list[dict[str, Any]] = []
    after = None

    async def next_page() -> list[dict[str, Any]]:
        nonlocal after
        page = await read_feed(api, org, after=after, limit=2)
        seen.extend(page["data"])
        after = page["meta"]["next_cursor"]
        return seen

    return await eventually_value(
        next_page, lambda seen: len(seen) >= expect, what=f"{expect} events", within=20
    )


class TestEventFeed:
    async def test_every_event_once_in_order(self, api: Api) -> None:
        org = await api.make_org("feed", balance="10", numbers=2)
        first = await place(api, org)
        second = await place(api, org, party_a="9876540001", party_b="9123456780")
        await wait_for(api, org, first["call_sid"])
        await wait_for(api, org, second["call_sid"])
        events = await whole_feed(api, org, expect=8)
        assert len({e["id"] for e in events}) == 8
        assert [int(e["cursor"]) for e in events] == list(range(1, 9))
        by_call = {
            sid: [(e["sequence"], e["event"]) for e in events if e["call_sid"] == sid]
            for sid in (first["call_sid"], second["call_sid"])
        }
        assert by_call[first["call_sid"]] == [
            (1, "call.initiated"),
            (2, "call.ringing"),
            (3, "call.answered"),
            (4, "call.bridged"),
            (5, "call.completed"),
            (6, "recording.ready"),
        ]
        assert by_call[second["call_sid"]] == [(1, "call.initiated"), (2, "call.failed")]
        tail = await read_feed(api, org, after=events[-1]["cursor"], limit=10)
        assert tail == {
            "data": [],
            "meta": {"next_cursor": events[-1]["cursor"], "has_more": False},
        }

    async def test_cursors_are_given_at_most_every_feed_interval_and_reach_the_last_event(
        self, api: Api
    ) -> None:
        """Every committed event wakes a claim round of the webhook worker; the rounds
        give the feed's cursors at most every FEED_EVERY_SEC, and the events committed
        after the last of them still get theirs."""
        org = await api.make_org("feed-rounds", balance="100", numbers=2)
        loop = asyncio.get_running_loop()

        def numbering(statement: str) -> bool:
            return statement.lstrip().startswith("UPDATE call_events SET cursor")

        with statement_times(api, numbering) as given:
            started = loop.time()
            await busy_calls_one_by_one(api, org, 20)
            events = await whole_feed(api, org, expect=40)
            elapsed = loop.time() - started
        assert [int(e["cursor"]) for e in events] == list(range(1, 41))
        assert [e["event"] for e in events].count("call.failed") == 20
        assert len(given) <= elapsed / FEED_EVERY_SEC + 2

    async def test_has_more_and_a_page_in_the_middle(self, api: Api) -> None:
        org = await api.make_org("feed-pages", balance="10", numbers=1)
        placed = await place(api, org, party_a="9876540001")
        await wait_for(api, org, placed["call_sid"])
        await whole_feed(api, org, expect=2)
        page = await read_feed(api, org, after=None, limit=1)
        assert (len(page["data"]), page["meta"]["has_more"]) == (1, True)
        rest = await read_feed(api, org, after=page["meta"]["next_cursor"], limit=5)
        assert [e["event"] for e in rest["data"]] == ["call.failed"]
        assert rest["meta"]["has_more"] is False

    async def test_an_unknown_cursor_is_400(self, api: Api) -> None:
        org = await api.make_org("feed-bad")
        other = await api.make_org("feed-other", balance="10", numbers=1)
        placed = await place(api, other, party_a="9876540001")
        await wait_for(api, other, placed["call_sid"])
        (theirs, *_) = await whole_feed(api, other, expect=2)
        for cursor in ("999999", "abc", theirs["cursor"]):
            response = await api.client.get(f"/v1/events?after={cursor}", headers=org.auth)
            assert response.status_code == 400
            assert response.json() == {
                "error": {
                    "code": "invalid_request",
                    "message": "after is not a cursor of this event feed.",
                }
            }
        mine = await read_feed(api, org, after=None, limit=10)
        assert mine == {"data": [], "meta": {"next_cursor": None, "has_more": False}}

    async def test_a_cursor_of_non_ascii_digits_is_400(self, api: Api) -> None:
        org = await api.make_org("feed-digits", balance="10", numbers=1)
        placed = await place(api, org, party_a="9876540001")
        await wait_for(api, org, placed["call_sid"])
        await whole_feed(api, org, expect=2)
        # "²" is a digit to str.isdigit() but not to int(); "١" (Arabic-Indic one) is
        # read by int() as 1, a cursor this organisation has.
        for cursor in ("²", "١", "1\n"):
            response = await api.client.get(
                "/v1/events", headers=org.auth, params={"after": cursor}
            )
            assert response.status_code == 400, cursor
            assert response.json() == {
                "error": {
                    "code": "invalid_request",
                    "message": "after is not a cursor of this event feed.",
                }
            }
