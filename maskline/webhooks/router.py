from __future__ import annotations

import re
from typing import Annotated, Literal, Protocol

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.errors import InvalidRequest, NotFound, RateLimited, Unauthorized, error_responses
from maskline.keys.auth import KeyDep
from maskline.kit.query import PageDep
from maskline.kit.web import Services, process_services
from maskline.webhooks import feed, repository, service
from maskline.webhooks.schemas import (
    DeliveryEnvelope,
    DeliveryList,
    DeliveryOut,
    FeedEvent,
    FeedMeta,
    FeedPage,
)

router = APIRouter(tags=["webhooks"])


class WebhooksServices(Services, Protocol):
    """What the webhook routes use of the running process."""

    def wake_worker(self) -> None: ...


RuntimeDep = Annotated[WebhooksServices, Depends(process_services)]

# ASCII digits only: str.isdigit() also takes "²" and "١", which int() refuses or reads.
_CURSOR = re.compile(r"[0-9]+")

DeliveryStatus = Literal["pending", "succeeded", "failed", "paused"]


@router.get(
    "/v1/webhooks/deliveries",
    response_model=DeliveryList,
    responses=error_responses(InvalidRequest, Unauthorized, RateLimited),
)
async def list_deliveries(
    principal: KeyDep,
    runtime: RuntimeDep,
    page: PageDep,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    call_sid: Annotated[str | None, Query(max_length=36)] = None,
    event: Annotated[str | None, Query(max_length=32)] = None,
) -> DeliveryList:
    """Every webhook delivery with its attempts and outcome, newest first."""
    async with runtime.db.read() as session:
        found = await repository.page_of_deliveries(
            session, principal.org_id, page, status=status, call_sid=call_sid, event=event
        )
    return DeliveryList(data=[DeliveryOut.build(r) for r in found.rows], meta=found.meta)


@router.post(
    "/v1/webhooks/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=DeliveryEnvelope,
    responses=error_responses(Unauthorized, NotFound, RateLimited),
)
async def replay_delivery(
    delivery_id: str, principal: KeyDep, runtime: RuntimeDep
) -> DeliveryEnvelope:
    """Send a delivery again now (the same event id and body).

    A delivery to the organisation's endpoint while a 410 keeps it disabled stays
    ``paused`` until the endpoint is set again."""

    async def change(session: AsyncSession) -> DeliveryOut:
        row = await service.replay(session, principal.org_id, delivery_id, now=runtime.clock.now())
        return DeliveryOut.build(row)

    out = await runtime.db.transaction(change)
    runtime.wake_worker()
    return DeliveryEnvelope(data=out)


@router.get(
    "/v1/events",
    response_model=FeedPage,
    responses=error_responses(InvalidRequest, Unauthorized, RateLimited),
)
async def list_events(
    principal: KeyDep,
    runtime: RuntimeDep,
    after: Annotated[
        str | None, Query(max_length=20, description="A cursor from this feed.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> FeedPage:
    """The organisation's events in order; follow ``meta.next_cursor`` to catch up."""
    async with runtime.db.read() as session:
        start = 0
        if after is not None:
            if not _CURSOR.fullmatch(after) or not await feed.cursor_exists(
                session, principal.org_id, int(after)
            ):
                raise InvalidRequest("after is not a cursor of this event feed.")
            start = int(after)
        rows = await feed.page_of_events(session, principal.org_id, after=start, limit=limit + 1)
    items = [FeedEvent.build(r) for r in rows[:limit]]
    next_cursor = items[-1].cursor if items else (after if after is not None else None)
    return FeedPage(data=items, meta=FeedMeta(next_cursor=next_cursor, has_more=len(rows) > limit))
