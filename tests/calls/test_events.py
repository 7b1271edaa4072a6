"""SPEC §6: every state change stores its event in the change's own transaction."""

from __future__ import annotations

import json

from sqlalchemy import select

from maskline.webhooks.models import CallEvent
from tests.support.api import Api
from tests.support.calls import place, wait_for


async def _events(api: Api, call_sid: str) -> list[CallEvent]:
    async with api.runtime.db.read() as session:
        rows = await session.execute(
            select(CallEvent).where(CallEvent.call_sid == call_sid).order_by(CallEvent.sequence)
        )
        return list(rows.scalars())


class TestCallEvents:
    async def test_a_completed_call_stores_five_events_in_sequence(self, api: Api) -> None:
        org = await api.make_org("events-done", balance="10", numbers=1)
        # Unrecorded, so ``recording.ready`` (tests/recordings) does not follow.
        placed = await place(api, org, metadata={"order": "o-1"}, record=False)
        final = await wait_for(api, org, placed["call_sid"])
        events = await _events(api, placed["call_sid"])
        assert [(e.sequence, e.event) for e in events] == [
            (1, "call.initiated"),
            (2, "call.ringing"),
            (3, "call.answered"),
            (4, "call.bridged"),
            (5, "call.completed"),
        ]
        payloads = [json.loads(e.payload) for e in events]
        for event, payload in zip(events, payloads, strict=True):
            assert payload["id"] == event.id
            assert event.id.startswith("evt_")
            assert (payload["event"], payload["sequence"], payload["call_sid"]) == (
                event.event,
                event.sequence,
                placed["call_sid"],
            )
        assert [p["data"]["status"] for p in payloads] == [
            "initiated",
            "ringing",
            "answered",
            "in-progress",
            "completed",
        ]
        assert payloads[-1]["data"] == final
        assert payloads[-1]["data"]["metadata"] == {"order": "o-1"}
        # One call object (SPEC §3): the POST answered with call.initiated's data, and
        # the answer, every payload and the GET carry the document's fields in its order.
        assert payloads[0]["data"] == placed
        document = (await api.client.get("/openapi.json")).json()
        fields = list(document["components"]["schemas"]["CallOut"]["properties"])
        assert len(fields) == 30
        objects = [placed, *(p["data"] for p in payloads), final]
        assert [list(call) for call in objects] == [fields] * 7

    async def test_a_failed_call_stores_only_the_states_it_reached(self, api: Api) -> None:
        org = await api.make_org("events-busy", balance="10", numbers=1)
        placed = await place(api, org, party_a="9876540001")
        await wait_for(api, org, placed["call_sid"])
        events = await _events(api, placed["call_sid"])
        assert [(e.sequence, e.event) for e in events] == [
            (1, "call.initiated"),
            (2, "call.failed"),
        ]
