from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from maskline.kit.clock import ScaledClock
from maskline.webhooks import service
from maskline.webhooks.models import WebhookDelivery
from maskline.webhooks.outbox import Recorded, record_event
from tests.calls.conftest import call_settings
from tests.support.api import Api, OrgHandle, running_api

# Fast enough that the retry schedule (5 s, 5 min, 30 min, …) plays out in seconds.
SPEED = 600.0


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = call_settings(database_url, tmp_path / "data", sim_ring_sec=2, sim_talk_sec=20)
    async with running_api(settings, clock=ScaledClock(SPEED)) as running:
        yield running


async def point_at(api: Api, org: OrgHandle, url: str) -> None:
    async with api.runtime.db.write() as session:
        await service.set_url(
            session, org.id, url, box=api.runtime.box, now=api.runtime.clock.now()
        )


async def webhook_test_events(
    api: Api, org: OrgHandle, count: int = 1, *, due_after: timedelta | None = None
) -> list[Recorded]:
    """``count`` ``webhook.test`` events for the organisation, in one transaction. They
    belong to no call, so nothing orders them: all are due at once, or ``due_after``
    from now (as retries are)."""
    async with api.runtime.db.write() as session:
        recorded = [
            await record_event(
                session,
                org_id=org.id,
                event="webhook.test",
                call_sid=None,
                sequence=0,
                data={"number": number},
                webhook_url=None,
                now=api.runtime.clock.now(),
            )
            for number in range(count)
        ]
        if due_after is not None:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.event_id.in_([r.event_id for r in recorded]))
                .values(next_attempt_at=api.runtime.clock.now() + due_after)
            )
    return recorded
