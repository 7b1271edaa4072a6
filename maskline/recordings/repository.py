"""Recording rows: queued with the call's end, locked for every change after."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.scope import scoped
from maskline.recordings.calls import Calls
from maskline.recordings.models import Recording


def enqueue(session: AsyncSession, *, call_sid: str, org_id: str, now: datetime) -> None:
    """Queue the encoding of a bridged call's recording (in the transaction that ends it)."""
    session.add(
        Recording(
            call_sid=call_sid,
            org_id=org_id,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


async def lock_recording(
    session: AsyncSession, call_sid: str, *, org_id: str | None = None
) -> Recording | None:
    """The recording row (of ``org_id`` only, when given: the API; the worker's is any
    organisation's), locked for this transaction (PostgreSQL; SQLite's writer already is)."""
    query = scoped(Recording, org_id) if org_id is not None else select(Recording)
    return (
        await session.execute(query.where(Recording.call_sid == call_sid).with_for_update())
    ).scalar_one_or_none()


async def mark_deleted(
    session: AsyncSession, recording: Recording, *, calls: Calls, now: datetime
) -> str | None:
    """The recording and its call say so at once; returns the object the caller removes.

    The row keeps ``object_key`` until ``object_removed``: a file whose removal
    was interrupted is found again by the worker's sweep, never orphaned.
    """
    key = recording.object_key
    recording.status = "deleted"
    recording.deleted_at = now
    recording.lease_owner = None
    recording.lease_expires_at = None
    await calls.set_recording_status(session, [recording.call_sid], "none")
    return key


async def object_removed(session: AsyncSession, call_sid: str) -> None:
    """The deleted recording's file is gone from storage."""
    await session.execute(
        update(Recording)
        .where(Recording.call_sid == call_sid, Recording.status == "deleted")
        .values(object_key=None)
    )
