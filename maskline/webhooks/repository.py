from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.errors import NotFound
from maskline.kit.pagination import Page
from maskline.kit.scope import scoped
from maskline.webhooks.models import WebhookDelivery


async def page_of_deliveries(
    session: AsyncSession,
    org_id: str,
    page: Page,
    *,
    status: str | None = None,
    call_sid: str | None = None,
    event: str | None = None,
) -> tuple[list[WebhookDelivery], int]:
    query = scoped(WebhookDelivery, org_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if call_sid is not None:
        query = query.where(WebhookDelivery.call_sid == call_sid)
    if event is not None:
        query = query.where(WebhookDelivery.event == event)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.execute(
        query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .offset(page.offset)
        .limit(page.per_page)
    )
    return list(rows.scalars()), total


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
