from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from maskline.kit.clock import rfc3339
from maskline.kit.pagination import PageMeta
from maskline.webhooks.models import CallEvent, WebhookDelivery


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event: str
    call_sid: str | None
    url: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str | None
    succeeded_at: str | None

    @classmethod
    def build(cls, row: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=row.id,
            event_id=row.event_id,
            event=row.event,
            call_sid=row.call_sid,
            url=row.url,
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=rfc3339(row.next_attempt_at) if row.status == "pending" else None,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            created_at=rfc3339(row.created_at),
            succeeded_at=rfc3339(row.succeeded_at),
        )


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    meta: PageMeta


class DeliveryEnvelope(BaseModel):
    data: DeliveryOut


class FeedEvent(BaseModel):
    cursor: str
    id: str
    event: str
    call_sid: str | None
    created_at: str
    sequence: int
    data: dict[str, Any]

    @classmethod
    def build(cls, row: CallEvent) -> FeedEvent:
        payload = json.loads(row.payload)
        return cls(cursor=str(row.cursor), **payload)


class FeedMeta(BaseModel):
    next_cursor: str | None
    has_more: bool


class FeedPage(BaseModel):
    data: list[FeedEvent]
    meta: FeedMeta
