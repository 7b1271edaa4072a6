"""SPEC §1 and §7: every read and write is scoped to the key's organisation. Another
organisation's ids get exactly the answer an unknown id gets, on every route that
takes an id; a new route with a path parameter fails this file until it has a case."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from maskline.billing import invoices
from maskline.kit.clock import ScaledClock
from maskline.orgs import service as orgs
from maskline.webhooks import service as webhooks
from tests.calls.conftest import SPEED, call_settings
from tests.support.api import Api, OrgHandle, running_api
from tests.support.calls import place, wait_for
from tests.support.receiver import Receiver, receiving, until
from tests.support.waits import eventually_value

UNKNOWN_SID = "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
UNKNOWN_DELIVERY = "dlv_unknown0000000000"
UNKNOWN_INVOICE = "inv_unknown000000000000"


@dataclass(frozen=True)
class Owned:
    """What the owning organisation has: a finished, recorded call and a delivery."""

    owner: OrgHandle
    intruder: OrgHandle
    call_sid: str
    delivery_id: str
    cursor: str
    party_a: str
    signed_path: str  # the owner's signed recording URL, as a path
    invoice_id: str


Probe = Callable[[Api, Owned, OrgHandle, bool], Awaitable[httpx.Response]]


def _path(template: str, value: str) -> str:
    for name in ("{call_sid}", "{delivery_id}", "{invoice_id}"):
        template = template.replace(name, value)
    return template


def by_key(method: str, template: str, id_of: Callable[[Owned], str], unknown: str) -> Probe:
    """Request ``template`` with the owner's id (or an unknown one) and ``org``'s key."""

    async def probe(api: Api, owned: Owned, org: OrgHandle, known: bool) -> httpx.Response:
        path = _path(template, id_of(owned) if known else unknown)
        return await api.client.request(method, path, headers=org.auth)

    return probe


async def recording_file(api: Api, owned: Owned, org: OrgHandle, known: bool) -> httpx.Response:
    """The key-less signed URL: a key opens nothing, and a signature only its own call.

    ``known``: the owner's call_sid with no signature; otherwise the owner's valid
    signature applied to another call_sid.
    """
    if known:
        return await api.client.get(
            f"/v1/masking/recordings/{owned.call_sid}.mp3", headers=org.auth
        )
    query = urlsplit(owned.signed_path).query
    return await api.client.get(f"/v1/masking/recordings/{UNKNOWN_SID}.mp3?{query}")


NO_CALL = (404, {"error": {"code": "not_found", "message": "No call with this call_sid."}})
NO_DELIVERY = (
    404,
    {"error": {"code": "not_found", "message": "No webhook delivery with this id."}},
)
BAD_SIGNATURE = (
    403,
    {"error": {"code": "forbidden", "message": "This recording URL is expired or not valid."}},
)


def _sid(owned: Owned) -> str:
    return owned.call_sid


def _delivery(owned: Owned) -> str:
    return owned.delivery_id


def _invoice(owned: Owned) -> str:
    return owned.invoice_id


# (method, path) of every route with a path parameter → how to probe it, what the
# intruder must get, and the status the owner gets for the same request.
CASES: dict[tuple[str, str], tuple[Probe, tuple[int, dict[str, Any]], int]] = {
    ("GET", "/v1/masking/calls/{call_sid}"): (
        by_key("GET", "/v1/masking/calls/{call_sid}", _sid, UNKNOWN_SID),
        NO_CALL,
        200,
    ),
    ("POST", "/v1/masking/calls/{call_sid}/hangup"): (
        by_key("POST", "/v1/masking/calls/{call_sid}/hangup", _sid, UNKNOWN_SID),
        NO_CALL,
        200,
    ),
    ("GET", "/v1/masking/calls/{call_sid}/recording"): (
        by_key("GET", "/v1/masking/calls/{call_sid}/recording", _sid, UNKNOWN_SID),
        NO_CALL,
        200,
    ),
    # The owner's DELETE is not made (it would delete the file); the owner's GET
    # above and after every probe shows the recording is still there.
    ("DELETE", "/v1/masking/calls/{call_sid}/recording"): (
        by_key("DELETE", "/v1/masking/calls/{call_sid}/recording", _sid, UNKNOWN_SID),
        NO_CALL,
        0,
    ),
    ("GET", "/v1/masking/recordings/{call_sid}.mp3"): (recording_file, BAD_SIGNATURE, 0),
    ("HEAD", "/v1/masking/recordings/{call_sid}.mp3"): (
        by_key("HEAD", "/v1/masking/recordings/{call_sid}.mp3", _sid, UNKNOWN_SID),
        (403, {}),
        0,
    ),
    ("POST", "/v1/webhooks/deliveries/{delivery_id}/replay"): (
        by_key("POST", "/v1/webhooks/deliveries/{delivery_id}/replay", _delivery, UNKNOWN_DELIVERY),
        NO_DELIVERY,
        202,
    ),
    ("GET", "/v1/masking/billing/invoices/{invoice_id}.pdf"): (
        by_key("GET", "/v1/masking/billing/invoices/{invoice_id}.pdf", _invoice, UNKNOWN_INVOICE),
        (404, {"error": {"code": "not_found", "message": "No invoice with this id."}}),
        200,
    ),
}


def routes_with_path_parameters(api: Api) -> set[tuple[str, str]]:
    """The API's routes (the portal's pages, signed in by session rather than by key,
    are checked in a browser by ``tests/portal/test_browser.py``)."""
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(api.app.routes):
        path = route.path or ""
        if "{" in path and not path.startswith("/o/"):
            found |= {(method, path) for method in route.methods or ()}
    return found


@pytest.fixture
def receiver() -> Any:
    with receiving() as running:
        yield running


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(
        call_settings(database_url, tmp_path / "data"), clock=ScaledClock(SPEED)
    ) as running:
        yield running


async def _first_cursor(api: Api, org: OrgHandle) -> str:
    async def feed() -> list[dict[str, Any]]:
        response = await api.client.get("/v1/events", headers=org.auth)
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["data"]
        return events

    events = await eventually_value(
        feed, lambda events: len(events) > 0, what="an event with a cursor", within=20
    )
    return str(events[0]["cursor"])


@pytest.fixture
async def owned(api: Api, receiver: Receiver, request: pytest.FixtureRequest) -> Owned:
    suffix = request.node.name[-24:]
    owner = await api.make_org(f"bola-owner-{suffix}", balance="10", numbers=1)
    intruder = await api.make_org(f"bola-intruder-{suffix}", balance="10", numbers=1)
    async with api.runtime.db.write() as session:
        await webhooks.set_url(
            session, owner.id, receiver.url, box=api.runtime.box, now=api.runtime.clock.now()
        )
    call = await wait_for(api, owner, (await place(api, owner))["call_sid"])
    assert (call["status"], call["recording_status"]) == ("completed", "ready")
    await until(receiver, lambda got: len(got) >= 1)
    deliveries = await api.client.get("/v1/webhooks/deliveries", headers=owner.auth)
    recording = await api.client.get(
        f"/v1/masking/calls/{call['call_sid']}/recording", headers=owner.auth
    )
    async with api.runtime.db.write() as session:
        org = await orgs.get_org(session, owner.id)
        invoice = await invoices.top_up(
            session, org, 1000, settings=api.runtime.settings, now=api.runtime.clock.now()
        )
    url = urlsplit(recording.json()["data"]["url"])
    assert parse_qs(url.query).keys() == {"expires", "signature"}
    return Owned(
        owner=owner,
        intruder=intruder,
        call_sid=call["call_sid"],
        delivery_id=deliveries.json()["data"][0]["id"],
        cursor=await _first_cursor(api, owner),
        party_a=call["party_a"],
        signed_path=f"{url.path}?{url.query}",
        invoice_id=invoice.id,
    )


def _answer(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    return response.status_code, response.json() if response.content else {}


class TestOtherOrganisationsIds:
    async def test_every_route_with_a_path_parameter_has_a_case(self, api: Api) -> None:
        assert routes_with_path_parameters(api) == set(CASES)

    async def test_another_organisations_ids_are_answered_like_unknown_ones(
        self, api: Api, owned: Owned
    ) -> None:
        for route, (probe, expected, owner_status) in CASES.items():
            if owner_status:
                mine = await probe(api, owned, owned.owner, True)
                assert mine.status_code == owner_status, (route, mine.text)
            theirs = await probe(api, owned, owned.intruder, True)
            unknown = await probe(api, owned, owned.intruder, False)
            assert _answer(theirs) == expected, route
            assert _answer(unknown) == expected, route
        # Nothing the intruder did changed the owner's call or recording.
        call = await api.client.get(f"/v1/masking/calls/{owned.call_sid}", headers=owned.owner.auth)
        assert (call.json()["data"]["status"], call.json()["data"]["recording_status"]) == (
            "completed",
            "ready",
        )
        media = await api.client.get(owned.signed_path)
        assert (media.status_code, media.headers["content-type"]) == (200, "audio/mpeg")

    async def test_filters_naming_another_organisations_ids_find_nothing(
        self, api: Api, owned: Owned
    ) -> None:
        intruder = owned.intruder.auth
        deliveries = await api.client.get(
            "/v1/webhooks/deliveries", headers=intruder, params={"call_sid": owned.call_sid}
        )
        assert (deliveries.status_code, deliveries.json()["data"]) == (200, [])
        logs = await api.client.get(
            "/v1/masking/call-logs", headers=intruder, params={"party": owned.party_a}
        )
        assert (logs.status_code, logs.json()["data"], logs.json()["meta"]["total"]) == (
            200,
            [],
            0,
        )
        feed = await api.client.get("/v1/events", headers=intruder, params={"after": owned.cursor})
        assert _answer(feed) == (
            400,
            {
                "error": {
                    "code": "invalid_request",
                    "message": "after is not a cursor of this event feed.",
                }
            },
        )
        # The owner's own filters do find them (the ids are real).
        mine = await api.client.get(
            "/v1/webhooks/deliveries", headers=owned.owner.auth, params={"call_sid": owned.call_sid}
        )
        assert owned.delivery_id in [d["id"] for d in mine.json()["data"]]
