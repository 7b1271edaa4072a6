"""The database figures ``/metrics`` reports, read at scrape time (all organisations)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing.models import Wallet
from maskline.calls.models import LIVE_STATUSES, Call
from maskline.ops.metrics import DatabaseFigures
from maskline.webhooks.models import WebhookDelivery


async def read_figures(session: AsyncSession, *, now: datetime) -> DatabaseFigures:
    calls = {
        (status, cause or ""): count
        for status, cause, count in (
            await session.execute(
                select(Call.status, Call.hangup_cause, func.count()).group_by(
                    Call.status, Call.hangup_cause
                )
            )
        ).all()
    }
    holds = (
        await session.execute(
            select(func.count()).where(Call.status.in_(LIVE_STATUSES), Call.hold_paise > 0)
        )
    ).scalar_one()
    reserved = (
        await session.execute(select(func.coalesce(func.sum(Wallet.reserved), 0)))
    ).scalar_one()
    deliveries = {
        status: count
        for status, count in (
            await session.execute(
                select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
            )
        ).all()
    }
    oldest_due = (
        await session.execute(
            select(func.min(WebhookDelivery.next_attempt_at)).where(
                WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now
            )
        )
    ).scalar_one()
    return DatabaseFigures(
        calls=calls,
        live_calls=sum(count for (status, _), count in calls.items() if status in LIVE_STATUSES),
        holds=holds,
        holds_paise=int(reserved),
        deliveries=deliveries,
        oldest_due_seconds=0.0 if oldest_due is None else (now - oldest_due).total_seconds(),
    )
