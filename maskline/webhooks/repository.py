from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.errors import NotFound
from maskline.kit.pagination import Listing, Page, Paged, page_of
from maskline.kit.scope import scoped
from maskline.webhooks.models import WebhookDelivery

DELIVERIES = Listing(
    WebhookDelivery,
    WebhookDelivery.created_at,
    WebhookDelivery.id,
    name="deliveries",
    noun="deliveries",
)


async def page_of_deliveries(
    session: AsyncSession,
    org_id: str,
    page: Page,
    *,
    status: str | None = None,
    call_sid: str | None = None,
    event: str | None = None,
) -> Paged[WebhookDelivery]:
    """The organisation's deliveries, newest first, filtered."""
    query = scoped(WebhookDelivery, org_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if call_sid is not None:
        query = query.where(WebhookDelivery.call_sid == call_sid)
    if event is not None:
        query = query.where(WebhookDelivery.event == event)
    filters = {"status": status, "call_sid": call_sid, "event": event}
    return await page_of(session, DELIVERIES, [query], page, filters=filters)


async def find_delivery(
    session: AsyncSession, org_id: str | None, delivery_id: str
) -> WebhookDelivery:
    """A delivery of ``org_id`` (or of any organisation, for the operator's CLI)."""
    query = (
        scoped(WebhookDelivery, org_id) if org_id is not None else select(WebhookDelivery)
    ).where(WebhookDelivery.id == delivery_id)
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFound("No webhook delivery with this id.")
    return row
