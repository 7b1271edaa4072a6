"""Deleting old calls (``MASKLINE_CALL_RETENTION_DAYS``, SPEC §10).

A call goes with its events, webhook deliveries, number leases, recording and the
idempotency entries of its time; its figures go to the stats rollup in the same
transaction. Ledger entries and invoices are money records and stay: an entry only
loses its link to the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing.models import LedgerEntry
from maskline.calls import tally
from maskline.calls.models import TERMINAL_STATUSES, Call, IdempotencyKey
from maskline.kit.crypto import KeyedDigest
from maskline.numbers.models import NumberLease
from maskline.recordings.models import Recording
from maskline.stats.rollup import roll_up
from maskline.webhooks.models import CallEvent, WebhookDelivery

UNDELIVERED = ("pending", "paused")


async def expired_calls(session: AsyncSession, *, before: datetime, limit: int) -> list[str]:
    """Up to ``limit`` ended calls created before ``before``, oldest first. A recording
    still being encoded waits for its outcome, and a webhook delivery still due
    (``pending``, or ``paused`` until its endpoint is set again) for its own: retention
    never drops an event its receiver has not had."""
    undelivered = exists().where(
        WebhookDelivery.call_sid == Call.call_sid,
        WebhookDelivery.status.in_(UNDELIVERED),
    )
    return list(
        (
            await session.execute(
                select(Call.call_sid)
                .where(
                    Call.created_at < before,
                    Call.status.in_(TERMINAL_STATUSES),
                    Call.recording_status != "pending",
                    ~undelivered,
                )
                .order_by(Call.created_at, Call.id)
                .limit(limit)
            )
        ).scalars()
    )


async def delete_calls(
    session: AsyncSession, call_sids: Sequence[str], *, digest: KeyedDigest
) -> int:
    """Delete these calls and what hangs on them, after rolling their figures up.

    A call whose recording file is still stored stays (the caller removes the file
    first; a file that could not be removed is retried on the next run).
    """
    file_kept = exists().where(
        Recording.call_sid == Call.call_sid, Recording.object_key.is_not(None)
    )
    calls = list(
        (
            await session.execute(
                select(Call)
                .where(Call.call_sid.in_(call_sids), ~file_kept)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    if not calls:
        return 0
    sids = [call.call_sid for call in calls]
    await roll_up(session, calls, digest=digest)
    events = select(CallEvent.id).where(CallEvent.call_sid.in_(sids))
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(events)))
    await session.execute(delete(CallEvent).where(CallEvent.call_sid.in_(sids)))
    await session.execute(delete(NumberLease).where(NumberLease.call_sid.in_(sids)))
    await session.execute(delete(Recording).where(Recording.call_sid.in_(sids)))
    await session.execute(
        update(LedgerEntry).where(LedgerEntry.call_sid.in_(sids)).values(call_sid=None)
    )
    await session.execute(delete(Call).where(Call.call_sid.in_(sids)))
    await tally.uncount_calls(session, [call.org_id for call in calls])
    return len(sids)


async def forget_idempotency(session: AsyncSession, *, before: datetime) -> None:
    """Idempotency entries as old as the deleted calls (their stored responses hold them)."""
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
