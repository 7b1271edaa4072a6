"""One call's events in order: the timeline on the portal's call page."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.scope import scoped
from maskline.webhooks.models import CallEvent


async def events_of_call(session: AsyncSession, org_id: str, call_sid: str) -> list[CallEvent]:
    rows = await session.execute(
        scoped(CallEvent, org_id).where(CallEvent.call_sid == call_sid).order_by(CallEvent.sequence)
    )
    return list(rows.scalars())
