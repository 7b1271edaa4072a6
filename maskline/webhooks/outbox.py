"""Writing events into the outbox, in the transaction of the change that caused them.

Each event gets one delivery row for its target: the call's ``webhook_url`` if
it has one, else the organisation's endpoint (paused while that endpoint is
disabled by a 410). No target, no delivery: the event is still in the feed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.clock import rfc3339
from maskline.kit.ids import new_id
from maskline.webhooks.models import CallEvent, WebhookDelivery
from maskline.webhooks.service import get_endpoint


async def record_event(
    session: AsyncSession,
    *,
    org_id: str,
    event: str,
    call_sid: str | None,
    sequence: int,
    data: dict[str, Any],
    webhook_url: str | None,
    now: datetime,
) -> tuple[CallEvent, WebhookDelivery | None]:
    event_id = new_id("evt")
    payload = {
        "id": event_id,
        "event": event,
        "call_sid": call_sid,
        "created_at": rfc3339(now),
        "sequence": sequence,
        "data": data,
    }
    row = CallEvent(
        id=event_id,
        org_id=org_id,
        call_sid=call_sid,
        sequence=sequence,
        event=event,
        payload=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
        created_at=now,
    )
    session.add(row)
    url, status = webhook_url, "pending"
    if url is None:
        endpoint = await get_endpoint(session, org_id)
        if endpoint is not None and endpoint.url:
            url = endpoint.url
            status = "pending" if endpoint.enabled else "paused"
    delivery = None
    if url is not None:
        delivery = WebhookDelivery(
            id=new_id("dlv"),
            org_id=org_id,
            event_id=event_id,
            event=event,
            call_sid=call_sid,
            sequence=sequence,
            url=url,
            to_endpoint=webhook_url is None,
            status=status,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(delivery)
    await session.flush()
    return row, delivery
