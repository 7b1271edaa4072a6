"""SPEC §6: signed, ordered, at-least-once webhook delivery to a real local receiver."""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import datetime
from typing import Any

import pytest

from maskline.settings import Settings
from maskline.webhooks import ssrf
from maskline.webhooks.delivery import Clients, Connections
from maskline.webhooks.signing import edesy_signature, standard_signature
from maskline.webhooks.tasks import Job, deliver
from tests.support.api import Api, running_api
from tests.support.calls import place, post_at_once, wait_for
from tests.support.receiver import Answer, Received, Receiver, receiving, until
from tests.support.waits import eventually_value
from tests.webhooks.conftest import point_at, webhook_test_events

LIFECYCLE = [
    "call.initiated",
    "call.ringing",
    "call.answered",
    "call.bridged",
    "call.completed",
    "recording.ready",
]


def events_of(requests: list[Received], call_sid: str, *, ok_only: bool = True) -> list[Any]:
    return [
        r.json
        for r in requests
        if r.json.get("call_sid") == call_sid and (not ok_only or r.answered < 300)
    ]


def has(call_sid: str, count: int) -> Any:
    return lambda requests: len(events_of(requests, call_sid)) >= count


async def deliveries(api: Api, auth: dict[str, str], **params: str) -> list[dict[str, Any]]:
    response = await api.client.get("/v1/webhooks/deliveries", headers=auth, params=params)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def settled_deliveries(
    api: Api, auth: dict[str, str], done: Any, **params: str
) -> list[dict[str, Any]]:
    """The delivery log once ``done(rows)`` holds (the worker records after the POST)."""
    return await eventually_value(
        lambda: deliveries(api, auth, **params),
        done,
        what="the delivery log to settle",
        within=20,
        # Gently: the API counts these against the key's budget of 100 a minute.
        interval=0.25,
    )


class TestLifecycle:
    async def test_every_event_arrives_in_order_and_both_signatures_verify(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hook-order", balance="10", numbers=1)
        await point_at(api, org, receiver.url)
        placed = await place(api, org)
        final = await wait_for(api, org, placed["call_sid"])
        requests = await until(receiver, has(placed["call_sid"], 6))
        got = [r for r in requests if r.json.get("call_sid") == placed["call_sid"]]
        assert [r.json["event"] for r in got] == LIFECYCLE
        assert [r.json["sequence"] for r in got] == [1, 2, 3, 4, 5, 6]
        assert (final["recording_status"], got[-2].json["data"]["recording_status"]) == (
            "ready",
            "pending",
        )
        assert got[-1].json["data"] == final
        for request in got:
            expected = hmac.new(org.webhook_secret.encode(), request.body, hashlib.sha256)
            assert request.headers["x-edesy-signature"] == expected.hexdigest()
            assert request.headers["webhook-id"] == request.json["id"]
            # (The standardwebhooks package itself is run in test_cli_webhooks.py: here the
            # clock runs fast, and it would rightly refuse timestamps from the future.)
            assert request.headers["webhook-signature"] == standard_signature(
                org.webhook_secret,
                request.headers["webhook-id"],
                int(request.headers["webhook-timestamp"]),
                request.body,
            )
            assert request.headers["content-type"] == "application/json"

    async def test_a_per_call_url_overrides_the_endpoint(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hook-override", balance="10", numbers=1)
        await point_at(api, org, "http://127.0.0.1:9/never")
        placed = await place(api, org, webhook_url=receiver.url, party_a="9876540001")
        requests = await until(receiver, has(placed["call_sid"], 2))
        assert [r["event"] for r in events_of(requests, placed["call_sid"])] == [
            "call.initiated",
            "call.failed",
        ]
        assert requests[-1].headers["x-edesy-signature"] == edesy_signature(
            org.webhook_secret, requests[-1].body
        )

    async def test_calls_placed_at_once_each_get_their_first_event_to_their_own_target(
        self, api: Api, receiver: Receiver
    ) -> None:
        # A batch writes its new calls' rows, events and deliveries in one statement
        # (PostgreSQL): calls with a URL of their own beside calls to the endpoint.
        org = await api.make_org("hook-mixed", balance="100", numbers=8)
        endpoint, own = f"{receiver.url}/endpoint", f"{receiver.url}/own"
        await point_at(api, org, endpoint)
        writer = api.runtime.db.writer
        batches, units = writer.batches, writer.units
        bodies = [
            {
                # A ending 0000 rings until its timeout: no event but the first two.
                "party_a": f"98765{n:01d}0000",
                "party_b": f"91234{n:05d}",
                "ring_timeout_sec": 120,
                **({"webhook_url": own} if n % 2 == 0 else {}),
            }
            for n in range(6)
        ]
        responses = await post_at_once(api, org, bodies)
        assert [r.status_code for r in responses] == [201] * 6
        assert writer.units - units > writer.batches - batches
        sids = [r.json()["data"]["call_sid"] for r in responses]
        initiated = {
            d["call_sid"]: d["url"]
            for d in await deliveries(api, org.auth)
            if d["event"] == "call.initiated"
        }
        assert initiated == {sid: own if n % 2 == 0 else endpoint for n, sid in enumerate(sids)}

    async def test_a_nul_in_one_calls_metadata_fails_no_call_of_its_batch(
        self, api: Api, receiver: Receiver
    ) -> None:
        # The batch's rows go to PostgreSQL as one JSON array: a document holding
        # "\u0000" must arrive as it was sent, and must not fail its batch's other calls.
        org = await api.make_org("hook-nul", balance="100", numbers=8)
        await point_at(api, org, receiver.url)
        metadata = [{"note": "a\u0000b"}, {"n": "1"}, None, {"k": 'x\\y "q" \u00fc'}]
        bodies = [
            {
                "party_a": f"98765{n:01d}0000",
                "party_b": f"91234{n:05d}",
                "ring_timeout_sec": 120,
                **({"metadata": m} if m is not None else {}),
            }
            for n, m in enumerate(metadata)
        ]
        responses = await post_at_once(api, org, bodies)
        assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
        for response, sent in zip(responses, metadata, strict=True):
            sid = response.json()["data"]["call_sid"]
            got = await api.client.get(f"/v1/masking/calls/{sid}", headers=org.auth)
            assert got.json()["data"]["metadata"] == sent


class TestRetries:
    @pytest.mark.slow
    async def test_500_three_times_then_200_arrives_on_the_fourth_attempt(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hook-retry", balance="10", numbers=1)
        await point_at(api, org, receiver.url)
        receiver.script = [500, 500, 500]
        placed = await place(api, org, party_a="9876540002")  # initiated, then failed
        requests = await until(receiver, has(placed["call_sid"], 2), within=30)
        attempts = [r for r in requests if r.json["event"] == "call.initiated"]
        assert [r.answered for r in attempts] == [500, 500, 500, 200]
        assert len({r.headers["webhook-id"] for r in attempts}) == 1
        assert len({r.body for r in attempts}) == 1
        stamps = [int(r.headers["webhook-timestamp"]) for r in attempts]
        assert stamps == sorted(stamps)
        assert stamps[0] < stamps[-1]
        # The next event waited for the first to settle.
        assert requests.index(attempts[-1]) < max(
            i for i, r in enumerate(requests) if r.json["event"] == "call.failed"
        )
        rows = await settled_deliveries(
            api,
            org.auth,
            lambda rows: rows[0]["status"] != "pending",
            call_sid=placed["call_sid"],
            event="call.initiated",
        )
        assert [(d["status"], d["attempts"], d["last_status_code"]) for d in rows] == [
            ("succeeded", 4, 200)
        ]

    @pytest.mark.slow
    async def test_a_receiver_that_was_down_gets_everything_when_it_returns(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hook-down", balance="10", numbers=1)
        port = receiver.port
        receiver.close()
        await point_at(api, org, f"http://127.0.0.1:{port}/hooks")
        placed = await place(api, org)
        await wait_for(api, org, placed["call_sid"])
        # Once the worker has recorded a refused attempt, every event is still pending.
        rows = await settled_deliveries(
            api,
            org.auth,
            lambda rows: bool(rows) and max(d["attempts"] for d in rows) >= 1,
            call_sid=placed["call_sid"],
        )
        assert {d["status"] for d in rows} == {"pending"}
        back = Receiver(port)
        try:
            requests = await until(back, has(placed["call_sid"], 6), within=30)
            assert [r["event"] for r in events_of(requests, placed["call_sid"])] == LIFECYCLE
        finally:
            back.close()

    async def test_retry_after_is_honoured_on_429(self, api: Api, receiver: Receiver) -> None:
        org = await api.make_org("hook-429", balance="10", numbers=1)
        await point_at(api, org, receiver.url)
        receiver.script = [(429, {"Retry-After": "3600"})]
        placed = await place(api, org, party_a="9876540002")
        requests = await until(receiver, lambda rs: any(r.answered == 429 for r in rs))
        attempted_at = int(requests[0].headers["webhook-timestamp"])
        rows = await settled_deliveries(
            api,
            org.auth,
            lambda rows: rows[0]["attempts"] == 1,
            call_sid=placed["call_sid"],
            event="call.initiated",
        )
        (row,) = rows
        assert (row["status"], row["attempts"], row["last_status_code"]) == ("pending", 1, 429)
        assert row["last_error"] == "HTTP 429"
        wait = datetime.fromisoformat(row["next_attempt_at"]).timestamp() - attempted_at
        # An hour after the attempt, not the schedule's 5 s. (The clock runs 600× fast, so
        # the attempt's own round trip adds minutes of simulated time on a busy machine.)
        assert 3600 <= wait < 7200

    async def test_410_pauses_the_endpoint_until_it_is_set_again(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hook-410", balance="10", numbers=1)
        await point_at(api, org, receiver.url)
        receiver.script = [410]
        placed = await place(api, org, party_a="9876540002")
        await wait_for(api, org, placed["call_sid"])
        await until(receiver, lambda rs: any(r.answered == 410 for r in rs))
        rows = await settled_deliveries(
            api,
            org.auth,
            lambda rows: all(d["status"] == "paused" for d in rows),
            call_sid=placed["call_sid"],
        )
        assert sorted(d["status"] for d in rows) == ["paused", "paused"]
        await point_at(api, org, receiver.url)
        requests = await until(receiver, has(placed["call_sid"], 2))
        assert [r["event"] for r in events_of(requests, placed["call_sid"])] == [
            "call.initiated",
            "call.failed",
        ]

    async def test_410_from_a_per_call_url_fails_that_delivery_at_once(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hook-410-call", balance="10", numbers=1)
        await point_at(api, org, receiver.url)
        receiver.script = [410]
        placed = await place(api, org, party_a="9876540002", webhook_url=receiver.url)
        rows = await settled_deliveries(
            api,
            org.auth,
            lambda rows: len(rows) == 2 and all(d["status"] != "pending" for d in rows),
            call_sid=placed["call_sid"],
        )
        assert [
            (d["event"], d["status"], d["attempts"], d["last_status_code"], d["next_attempt_at"])
            for d in rows
        ] == [
            ("call.failed", "succeeded", 1, 200, None),
            ("call.initiated", "failed", 1, 410, None),
        ]
        assert rows[1]["last_error"] == "HTTP 410"
        # The organisation's own endpoint is not disabled by it.
        other = await place(api, org, party_a="9876540002")
        requests = await until(receiver, has(other["call_sid"], 2))
        assert [(r["event"], r["sequence"]) for r in events_of(requests, other["call_sid"])] == [
            ("call.initiated", 1),
            ("call.failed", 2),
        ]

    # 10**14 s overflows a timedelta; 5,000 digits are past what int() converts.
    @pytest.mark.parametrize("retry_after", ["99999999999999", "9" * 5000], ids=["14", "5000"])
    async def test_a_huge_retry_after_waits_the_longest_retry_delay(
        self, api: Api, receiver: Receiver, retry_after: str
    ) -> None:
        org = await api.make_org(f"hook-429-huge-{len(retry_after)}", balance="10", numbers=1)
        await point_at(api, org, receiver.url)
        receiver.script = [(429, {"Retry-After": retry_after})]
        placed = await place(api, org, party_a="9876540002")
        requests = await until(receiver, lambda rs: any(r.answered == 429 for r in rs))
        attempted_at = int(requests[0].headers["webhook-timestamp"])
        (row,) = await settled_deliveries(
            api,
            org.auth,
            lambda rows: rows[0]["attempts"] == 1,
            call_sid=placed["call_sid"],
            event="call.initiated",
        )
        assert (row["status"], row["attempts"], row["last_status_code"]) == ("pending", 1, 429)
        wait = datetime.fromisoformat(row["next_attempt_at"]).timestamp() - attempted_at
        # Clamped to 10 h, the schedule's longest delay (plus the attempt's own round trip).
        assert 36000 <= wait < 39600

    async def test_a_gzip_bomb_answer_is_not_read(self, api: Api, receiver: Receiver) -> None:
        org = await api.make_org("hook-bomb", balance="10", numbers=1)
        await point_at(api, org, receiver.url)
        # 200 KiB of gzip (200 MiB of zeros once unpacked), and the body never ends.
        receiver.script = [Answer(200, gzip_bomb=True)]
        placed = await place(api, org, party_a="9876540002")
        (row,) = await settled_deliveries(
            api,
            org.auth,
            lambda rows: rows[0]["attempts"] >= 1,
            call_sid=placed["call_sid"],
            event="call.initiated",
        )
        assert (row["status"], row["attempts"], row["last_status_code"], row["last_error"]) == (
            "succeeded",
            1,
            200,
            None,
        )
        requests = await until(receiver, lambda _: bool(receiver.hung_up))
        assert requests[0].headers["accept-encoding"] == "identity"
        assert len(receiver.hung_up) == 1


class TestEndpointChanges:
    @pytest.mark.slow
    async def test_webhook_set_moves_pending_retries_to_the_new_url(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hook-move", balance="10", numbers=1)
        receiver.default = 500
        await point_at(api, org, receiver.url)
        placed = await place(api, org, party_a="9876540002")
        await settled_deliveries(
            api,
            org.auth,
            lambda rows: any(d["attempts"] >= 1 for d in rows),
            call_sid=placed["call_sid"],
            event="call.initiated",
        )
        with receiving() as moved:
            await point_at(api, org, moved.url)
            requests = await until(moved, has(placed["call_sid"], 2))
            assert [r["event"] for r in events_of(requests, placed["call_sid"])] == [
                "call.initiated",
                "call.failed",
            ]
        rows = await deliveries(api, org.auth, call_sid=placed["call_sid"])
        assert {d["url"] for d in rows} == {moved.url}

    async def test_replaying_a_delivery_of_a_disabled_endpoint_keeps_it_paused(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hook-replay-410", balance="10", numbers=1)
        await point_at(api, org, receiver.url)
        receiver.script = [410]
        placed = await place(api, org, party_a="9876540002")
        rows = await settled_deliveries(
            api,
            org.auth,
            lambda rows: len(rows) == 2 and all(d["status"] == "paused" for d in rows),
            call_sid=placed["call_sid"],
        )
        response = await api.client.post(
            f"/v1/webhooks/deliveries/{rows[1]['id']}/replay", headers=org.auth
        )
        assert response.status_code == 202
        assert response.json()["data"]["status"] == "paused"
        await point_at(api, org, receiver.url)
        requests = await until(receiver, has(placed["call_sid"], 2))
        assert [r["event"] for r in events_of(requests, placed["call_sid"])] == [
            "call.initiated",
            "call.failed",
        ]

    async def test_a_410_answered_to_an_attempt_made_before_webhook_set_pauses_nothing(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hook-set-in-flight")
        await point_at(api, org, receiver.url)
        gate = threading.Event()
        receiver.script = [Answer(410, hold=gate)]
        await webhook_test_events(api, org)
        api.runtime.wake_worker()
        await until(receiver, lambda rs: len(rs) == 1)
        # The endpoint is set again while its 410 is on the way back.
        await point_at(api, org, receiver.url)
        gate.set()
        requests = await until(receiver, lambda rs: len(rs) == 2)
        assert [r.answered for r in requests] == [410, 200]
        assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
        [row] = await settled_deliveries(
            api, org.auth, lambda rows: rows[0]["status"] == "succeeded"
        )
        assert row["attempts"] == 2


class TestReplay:
    async def test_replay_sends_the_same_event_again(self, api: Api, receiver: Receiver) -> None:
        org = await api.make_org("hook-replay", balance="10", numbers=1)
        await point_at(api, org, receiver.url)
        placed = await place(api, org, party_a="9876540002")
        await until(receiver, has(placed["call_sid"], 2))
        (row,) = await settled_deliveries(
            api, org.auth, lambda rows: rows[0]["status"] == "succeeded", event="call.failed"
        )
        response = await api.client.post(
            f"/v1/webhooks/deliveries/{row['id']}/replay", headers=org.auth
        )
        assert response.status_code == 202
        assert response.json()["data"]["status"] == "pending"
        requests = await until(receiver, has(placed["call_sid"], 3))
        failed = [r for r in requests if r.json["event"] == "call.failed"]
        assert len(failed) == 2
        assert failed[0].body == failed[1].body
        assert failed[0].headers["webhook-id"] == failed[1].headers["webhook-id"]

    async def test_replaying_another_organisations_delivery_is_404(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hook-replay-owner", balance="10", numbers=1)
        other = await api.make_org("hook-replay-other")
        await point_at(api, org, receiver.url)
        placed = await place(api, org, party_a="9876540002")
        await until(receiver, has(placed["call_sid"], 2))
        (row,) = await deliveries(api, org.auth, event="call.failed")
        response = await api.client.post(
            f"/v1/webhooks/deliveries/{row['id']}/replay", headers=other.auth
        )
        assert response.status_code == 404
        assert await deliveries(api, other.auth) == []


class TestAttemptsThatRaise:
    async def test_an_attempt_that_raises_is_recorded_as_a_failed_attempt(
        self, settings: Settings
    ) -> None:
        # The API alone (no worker), and a network that fails in a way no HTTP error
        # covers: the attempt must still be recorded and retried.
        class Broken(Clients):
            async def for_destination(self, destination: ssrf.Destination) -> Connections:
                raise RuntimeError("a fault of ours")

        async with running_api(settings, role="api") as api:
            org = await api.make_org("hook-raises")
            await point_at(api, org, "http://127.0.0.1:9/hooks")
            runtime = api.runtime
            [recorded] = await webhook_test_events(api, org)
            assert recorded.delivery_id is not None
            assert recorded.url is not None
            job = Job(
                recorded.delivery_id,
                org.id,
                recorded.url,
                recorded.event_id,
                recorded.payload.encode(),
                0,
                True,
                runtime.clock.now(),
            )
            clients = Broken()
            try:
                await deliver(
                    job,
                    db=runtime.db,
                    clock=runtime.clock,
                    box=runtime.box,
                    clients=clients,
                    allow_private=True,
                )
            finally:
                await clients.aclose()
            (row,) = await deliveries(api, org.auth)
        assert (row["status"], row["attempts"], row["last_status_code"], row["last_error"]) == (
            "pending",
            1,
            None,
            "internal error: RuntimeError",
        )
        assert row["next_attempt_at"] is not None
