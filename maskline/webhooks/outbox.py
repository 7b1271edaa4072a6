"""Writing events into the outbox, in the transaction of the change that caused them.

Each event gets one delivery row for its target: the call's ``webhook_url`` if
it has one, else the organisation's endpoint (paused while that endpoint is
disabled by a 410). No target, no delivery: the event is still in the feed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Executable, Integer, case, literal, select
from sqlalchemy import insert as core_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from maskline.kit.clock import rfc3339
from maskline.kit.ids import new_id
from maskline.kit.scope import owned_by
from maskline.webhooks.models import CallEvent, WebhookDelivery, WebhookEndpoint


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record_event`` stored: the event, and its delivery when it has a target."""

    event_id: str
    payload: str
    delivery_id: str | None
    url: str | None


def _delivery(
    *,
    org_id: str,
    event_id: str,
    event: str,
    call_sid: str | None,
    sequence: int,
    webhook_url: str | None,
    now: datetime,
) -> Insert:
    """The event's delivery: to the call's own URL, else to the organisation's endpoint
    when it has a URL (paused while a 410 disabled it), read by the insert itself."""
    fixed = {
        "id": new_id("dlv"),
        "org_id": org_id,
        "event_id": event_id,
        "event": event,
        "call_sid": call_sid,
        "sequence": sequence,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    table = WebhookDelivery.__table__
    if webhook_url is not None:
        return core_insert(WebhookDelivery).values(
            **fixed, url=webhook_url, to_endpoint=False, status="pending"
        )
    types = {"sequence": Integer(), "attempts": Integer()}
    columns = [
        literal(value, types.get(name, table.c[name].type)).label(name)
        for name, value in fixed.items()
    ]
    endpoint = select(
        *columns,
        WebhookEndpoint.url.label("url"),
        literal(True, Boolean()).label("to_endpoint"),
        case((WebhookEndpoint.enabled, "pending"), else_="paused").label("status"),
    ).where(owned_by(WebhookEndpoint, org_id), WebhookEndpoint.url.is_not(None))
    endpoint = endpoint.where(WebhookEndpoint.url != "")
    names = [*fixed, "url", "to_endpoint", "status"]
    return core_insert(WebhookDelivery).from_select(names, endpoint)


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
    before: Sequence[Insert] = (),
) -> Recorded:
    """Store the event and its delivery (``before``: inserts of the change itself, such
    as a new call's row, written first). On PostgreSQL all of it is one statement (one
    round trip): the earlier inserts as data-modifying CTEs of the delivery's."""
    event_id = new_id("evt")
    payload = json.dumps(
        {
            "id": event_id,
            "event": event,
            "call_sid": call_sid,
            "created_at": rfc3339(now),
            "sequence": sequence,
            "data": data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    inserts: list[Insert] = [
        *before,
        core_insert(CallEvent).values(
            id=event_id,
            org_id=org_id,
            call_sid=call_sid,
            sequence=sequence,
            event=event,
            payload=payload,
            created_at=now,
        ),
    ]
    delivery = _delivery(
        org_id=org_id,
        event_id=event_id,
        event=event,
        call_sid=call_sid,
        sequence=sequence,
        webhook_url=webhook_url,
        now=now,
    ).returning(WebhookDelivery.id, WebhookDelivery.url)
    statements: list[Executable]
    if session.get_bind().dialect.name == "postgresql":
        ctes = [stmt.cte(f"written_{n}") for n, stmt in enumerate(inserts)]
        statements = [delivery.add_cte(*ctes)]
    else:
        statements = [*inserts, delivery]
    for statement in statements[:-1]:
        await session.execute(statement)
    row = (await session.execute(statements[-1])).one_or_none()
    return Recorded(
        event_id=event_id,
        payload=payload,
        delivery_id=None if row is None else row.id,
        url=None if row is None else row.url,
    )
