"""SPEC §6 at rate (issue 15): what the pooled, cached, batched worker must keep.

A rotation signs the next delivery, whatever process made it; a host whose DNS answer
turns private is refused although its earlier answer was cached; per-call order holds
while many calls are delivered at once; a receiver that never answers holds back its
own deliveries and no one else's.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from maskline.kit.clock import ScaledClock
from maskline.webhooks.outbox import Recorded, record_event
from maskline.webhooks.signing import edesy_signature, standard_signature
from maskline.webhooks.tasks import FAILURES_TO_OPEN, OPEN_FIRST, PER_ENDPOINT
from tests.calls.conftest import call_settings
from tests.conftest import Cli
from tests.support.api import Api, OrgHandle, running_api
from tests.support.dns import DnsServer, dns_server
from tests.support.receiver import Answer, Received, Receiver, receiving, until
from tests.support.server import free_port
from tests.support.waits import eventually_value
from tests.webhooks.conftest import SPEED, point_at, webhook_test_events
from tests.webhooks.test_delivery import deliveries, settled_deliveries

PUBLIC = "2606:4700::1111"  # global unicast; nothing here routes to it
PRIVATE = "10.0.0.7"


async def call_events(api: Api, org: OrgHandle, calls: int, events: int) -> list[Recorded]:
    """``events`` events (sequence 1, 2, …) for each of ``calls`` calls, all stored due
    at once in one transaction, the calls' events interleaved."""
    sids = [str(uuid.uuid4()) for _ in range(calls)]
    async with api.runtime.db.write() as session:
        return [
            await record_event(
                session,
                org_id=org.id,
                event="call.ringing",
                call_sid=sid,
                sequence=sequence,
                data={"sequence": sequence},
                webhook_url=None,
                now=api.runtime.clock.now(),
            )
            for sequence in range(1, events + 1)
            for sid in sids
        ]


def signatures(request: Received) -> list[str]:
    return request.headers["webhook-signature"].split(" ")


class TestSecretRotation:
    async def test_a_rotation_in_another_process_signs_the_next_delivery(
        self, api: Api, receiver: Receiver, cli: Cli
    ) -> None:
        org = await api.make_org(f"rotate-{uuid.uuid4().hex[:8]}")
        await point_at(api, org, receiver.url)
        old = org.webhook_secret
        [first] = await webhook_test_events(api, org)
        [before] = await until(receiver, lambda rs: len(rs) >= 1)
        assert signatures(before) == [
            standard_signature(
                old, first.event_id, int(before.headers["webhook-timestamp"]), before.body
            )
        ]

        # Another process (the loop runs on meanwhile: it may hold SQLite's write lock).
        rotated = await asyncio.to_thread(cli.ok, "webhook", "rotate-secret", "--org", org.name)
        new = str(rotated["secret"])
        [second] = await webhook_test_events(api, org)
        after = (await until(receiver, lambda rs: len(rs) >= 2))[1]
        assert after.headers["webhook-id"] == second.event_id
        timestamp = int(after.headers["webhook-timestamp"])
        # For 24 h both sign webhook-signature, the new one first; X-Edesy-Signature
        # keeps the old one (SPEC §6).
        assert signatures(after) == [
            standard_signature(new, second.event_id, timestamp, after.body),
            standard_signature(old, second.event_id, timestamp, after.body),
        ]
        assert after.headers["x-edesy-signature"] == edesy_signature(old, after.body)


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with dns_server() as server:
        yield server


@pytest.fixture
async def strict_api(database_url: str, tmp_path: Path, dns: DnsServer) -> AsyncIterator[Api]:
    settings = call_settings(
        database_url,
        tmp_path / "data",
        allow_private_webhooks=False,
        webhook_nameservers=f"127.0.0.1:{dns.port}",
    )
    async with running_api(settings, clock=ScaledClock(SPEED)) as running:
        yield running


class TestDnsChanges:
    async def test_a_host_whose_answer_turns_private_is_refused(
        self, strict_api: Api, dns: DnsServer
    ) -> None:
        host = f"hooks-{uuid.uuid4().hex[:8]}.example.test"
        dns.answer(host, PUBLIC, ttl=60)
        org = await strict_api.make_org(f"rebind-{uuid.uuid4().hex[:8]}")
        await point_at(strict_api, org, f"https://{host}:9/hooks")
        [first] = await webhook_test_events(strict_api, org)
        rows = await settled_deliveries(
            strict_api, org.auth, lambda rows: rows and rows[0]["attempts"] >= 1
        )
        # The public address passed the check: the attempt went to the network.
        assert rows[0]["id"] == first.delivery_id
        assert not rows[0]["last_error"].startswith("refused"), rows[0]["last_error"]

        # The name now points inside; the cached answer lives 60 s of the worker's clock
        # (a tenth of a second here), then the new one is checked before any connection.
        dns.answer(host, PRIVATE, ttl=60)
        [second] = await webhook_test_events(strict_api, org)
        rows = await settled_deliveries(
            strict_api,
            org.auth,
            lambda rows: any(
                r["id"] == second.delivery_id and (r["last_error"] or "").startswith("refused")
                for r in rows
            ),
        )
        refused = next(r for r in rows if r["id"] == second.delivery_id)
        assert refused["last_error"] == (
            f"refused: webhook_url must not point to a private or reserved address ({PRIVATE})."
        )
        assert refused["last_status_code"] is None


class TestConcurrentDelivery:
    async def test_each_calls_events_arrive_in_order_while_many_calls_go_at_once(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org(f"order-{uuid.uuid4().hex[:8]}")
        await point_at(api, org, receiver.url)
        # Some first attempts fail, so retries interleave with the other calls' events.
        receiver.script = [500] * 15
        recorded = await call_events(api, org, calls=30, events=4)
        expected = {r.event_id for r in recorded}
        requests = await until(
            receiver,
            lambda rs: {r.headers["webhook-id"] for r in rs if r.answered == 200} >= expected,
            within=60,
        )
        by_call: dict[str, list[Received]] = defaultdict(list)
        for request in requests:
            by_call[request.json["call_sid"]].append(request)
        assert len(by_call) == 30
        for arrivals in by_call.values():
            # An event's first attempt only after every earlier one succeeded: each
            # event's attempts are together, in sequence order, the last one a success.
            sequences = [r.json["sequence"] for r in arrivals]
            assert sequences == sorted(sequences)
            for sequence in (1, 2, 3, 4):
                attempts = [r.answered for r in arrivals if r.json["sequence"] == sequence]
                assert attempts[-1] == 200
                assert 200 not in attempts[:-1]


class TestSlowReceivers:
    async def test_a_receiver_that_never_answers_holds_back_only_its_own_deliveries(
        self, api: Api, receiver: Receiver
    ) -> None:
        release = threading.Event()
        slow_org = await api.make_org(f"slow-{uuid.uuid4().hex[:8]}")
        healthy_org = await api.make_org(f"healthy-{uuid.uuid4().hex[:8]}")
        await point_at(api, healthy_org, receiver.url)
        with receiving() as stuck:
            stuck.script = [Answer(200, hold=release) for _ in range(300)]
            await point_at(api, slow_org, stuck.url)
            try:
                # The slow receiver's events first: the longest due.
                slow = await webhook_test_events(api, slow_org, count=200)
                healthy = await webhook_test_events(api, healthy_org, count=50)
                await until(
                    receiver,
                    lambda rs: (
                        {r.headers["webhook-id"] for r in rs} >= {r.event_id for r in healthy}
                    ),
                )
                # Meanwhile the stuck one was sent its endpoint's share, and not one more.
                assert len(stuck.requests) == PER_ENDPOINT
            finally:
                release.set()
            await until(
                stuck,
                lambda rs: {r.headers["webhook-id"] for r in rs} >= {r.event_id for r in slow},
                within=60,
            )

    async def test_a_dead_receivers_backlog_waits_out_its_open_circuit(
        self, database_url: str, tmp_path: Path, receiver: Receiver
    ) -> None:
        # The system clock: the circuit stays open for its 5 s while the log is read.
        settings = call_settings(database_url, tmp_path / "data", sim_ring_sec=2, sim_talk_sec=20)
        async with running_api(settings) as api:
            dead_org = await api.make_org(f"dead-{uuid.uuid4().hex[:8]}")
            healthy_org = await api.make_org(f"healthy-{uuid.uuid4().hex[:8]}")
            await point_at(api, healthy_org, receiver.url)
            # Nothing listens there: every attempt is refused at once.
            await point_at(api, dead_org, f"http://127.0.0.1:{free_port()}/gone")
            # The worker has heard a receiver answer: its own network works, so it takes
            # the failures to come as the dead URL's.
            first = await webhook_test_events(api, healthy_org, count=1)
            await until(
                receiver, lambda rs: any(r.headers["webhook-id"] == first[0].event_id for r in rs)
            )
            # The log's times are to the second.
            queued = api.runtime.clock.now().replace(microsecond=0)
            # Another organisation's deliveries, due in 2 s: not the dead URL's to move.
            later = await webhook_test_events(
                api, healthy_org, count=20, due_after=timedelta(seconds=2)
            )
            # More than a claim takes for one URL: some are never claimed before the
            # circuit opens, some are claimed and never attempted.
            await webhook_test_events(api, dead_org, count=150)

            async def log() -> list[dict[str, Any]]:
                pages = [
                    await deliveries(api, dead_org.auth, page=str(page), per_page="100")
                    for page in (1, 2)
                ]
                return pages[0] + pages[1]

            def held_back(rows: list[dict[str, Any]]) -> bool:
                return len(rows) == 150 and all(
                    row["status"] == "pending"
                    and datetime.fromisoformat(row["next_attempt_at"]) - queued
                    >= timedelta(seconds=4)
                    for row in rows
                )

            rows = await eventually_value(
                log,
                held_back,
                what="the dead receiver's backlog held back",
                within=15,
                # Gently: the API counts these against the key's budget of 100 a minute.
                interval=0.5,
            )
            # Five failures in a row opened the circuit; the attempts already under way,
            # and those that took the slots the first four freed, failed too, each due
            # again about 5 s later (SPEC §6's first retry).
            attempted = [row for row in rows if row["attempts"] == 1]
            untried = [row for row in rows if row["attempts"] == 0]
            assert FAILURES_TO_OPEN <= len(attempted) <= PER_ENDPOINT + FAILURES_TO_OPEN - 1
            assert len(attempted) + len(untried) == 150
            # The rest wait for the circuit to let one through: one time for them all,
            # not the head of the due order, where every claim would pass over them.
            reopens = {row["next_attempt_at"] for row in untried}
            assert len(reopens) == 1
            reopen = datetime.fromisoformat(reopens.pop())
            assert reopen - queued >= OPEN_FIRST
            # The other organisation's deliveries went when they were due, before then.
            wall = time.time() - time.perf_counter()
            later_ids = {r.event_id for r in later}
            requests = await until(
                receiver, lambda rs: {r.headers["webhook-id"] for r in rs} >= later_ids
            )
            arrived = [r.at + wall for r in requests if r.headers["webhook-id"] in later_ids]
            assert len(arrived) == 20
            assert max(arrived) < reopen.timestamp()

    async def test_a_worker_that_has_heard_no_receiver_holds_back_nothing(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """Its own network may be what fails: other workers may still deliver them."""
        settings = call_settings(database_url, tmp_path / "data", sim_ring_sec=2, sim_talk_sec=20)
        async with running_api(settings) as api:
            dead_org = await api.make_org(f"dead-{uuid.uuid4().hex[:8]}")
            await point_at(api, dead_org, f"http://127.0.0.1:{free_port()}/gone")
            await webhook_test_events(api, dead_org, count=50)
            rows = await eventually_value(
                lambda: deliveries(api, dead_org.auth, per_page="100"),
                lambda rows: sum(row["attempts"] for row in rows) >= FAILURES_TO_OPEN,
                what="the circuit to open",
                interval=0.5,
            )
            # What the worker claimed and did not attempt is given back meanwhile.
            await asyncio.sleep(1)
            rows = await deliveries(api, dead_org.auth, per_page="100")
            untried = [row for row in rows if row["attempts"] == 0]
            assert len(untried) >= 50 - (PER_ENDPOINT + FAILURES_TO_OPEN - 1)
            assert {row["next_attempt_at"] for row in untried} == {
                row["created_at"] for row in untried
            }
