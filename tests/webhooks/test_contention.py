"""SPEC §6 under load: a 410 answered to many concurrent attempts of one organisation."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.conftest import Cli
from tests.support.api import Api
from tests.support.receiver import Received, Receiver, until
from tests.webhooks.conftest import point_at, webhook_test_events
from tests.webhooks.test_delivery import settled_deliveries

# Two of the worker's claim batches: enough attempts in flight at once (32) that their
# outcomes are recorded concurrently.
EVENTS = 100


def sent(requests: list[Received]) -> Counter[str]:
    return Counter(r.headers["webhook-id"] for r in requests)


class TestGoneUnderLoad:
    async def test_every_attempt_is_recorded_and_webhook_set_resumes_them_all(
        self, api: Api, receiver: Receiver, cli: Cli
    ) -> None:
        org = await api.make_org("hook-410-load")
        await point_at(api, org, receiver.url)
        receiver.default = 410
        await webhook_test_events(api, org, EVENTS)
        api.runtime.wake_worker()
        await until(receiver, lambda rs: any(r.answered == 410 for r in rs))
        paused = await settled_deliveries(
            api,
            org.auth,
            lambda rows: all(d["status"] == "paused" for d in rows),
            per_page="100",
        )
        assert len(paused) == EVENTS

        receiver.default = 200
        local = Cli({**cli.env, "MASKLINE_ALLOW_PRIVATE_WEBHOOKS": "true"}, cli.cwd)
        result = await asyncio.to_thread(
            local, "webhook", "set", "--org", "hook-410-load", "--url", receiver.url
        )
        assert (result.code, result.stderr) == (0, "")
        await until(receiver, lambda rs: len(sent([r for r in rs if r.answered == 200])) == EVENTS)
        done: list[dict[str, Any]] = await settled_deliveries(
            api,
            org.auth,
            lambda rows: all(d["status"] == "succeeded" for d in rows),
            per_page="100",
        )
        # Every attempt the receiver saw is in the log: none was lost to an aborted
        # transaction (PostgreSQL's deadlocks), and each event succeeded once.
        requests = sent(receiver.requests)
        assert {d["event_id"]: d["attempts"] for d in done} == dict(requests)
        assert sent([r for r in receiver.requests if r.answered == 200]) == Counter(
            {d["event_id"]: 1 for d in done}
        )
