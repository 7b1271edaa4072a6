"""The recording resource of a call (SPEC §5): read it, sign its URL, delete it."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.errors import NotFound
from maskline.kit.clock import rfc3339
from maskline.kit.db import Database
from maskline.kit.scope import scoped
from maskline.recordings.calls import Calls
from maskline.recordings.models import Recording
from maskline.recordings.repository import lock_recording, mark_deleted, object_removed
from maskline.recordings.schemas import RecordingOut
from maskline.recordings.signing import UrlSigner
from maskline.recordings.storage import Storage
from maskline.telephony.media.recorder import Spool

log = logging.getLogger("maskline.recordings")

NOT_READY = "This call has no recording ready."
NOTHING_TO_DELETE = "This call has no recording to delete."


def media_path(call_sid: str) -> str:
    """The path of the signed, key-less URL that streams the file."""
    return f"/v1/masking/recordings/{call_sid}.mp3"


async def ready_recording(
    session: AsyncSession, org_id: str, call_sid: str, *, calls: Calls
) -> Recording:
    found = await calls.find(session, org_id, call_sid)
    recording = (
        await session.execute(scoped(Recording, org_id).where(Recording.call_sid == found))
    ).scalar_one_or_none()
    if recording is None or recording.status != "ready":
        raise NotFound(NOT_READY)
    return recording


def describe(
    recording: Recording, *, signer: UrlSigner, public_url: str, now: datetime
) -> RecordingOut:
    signed, expires_at = signer.sign(media_path(recording.call_sid), now=now)
    assert recording.duration_ms is not None
    assert recording.size_bytes is not None
    return RecordingOut(
        call_sid=recording.call_sid,
        url=f"{public_url.rstrip('/')}{signed}",
        expires_at=rfc3339(expires_at) or "",
        duration_sec=recording.duration_ms // 1000,
        size_bytes=recording.size_bytes,
    )


async def delete_recording(
    session: AsyncSession, org_id: str, call_sid: str, *, calls: Calls, now: datetime
) -> str | None:
    """Mark the recording deleted (its URLs stop at once); returns the object to remove.

    A recording still being encoded is deleted too: the worker then throws its
    file away instead of publishing it.
    """
    found = await calls.find(session, org_id, call_sid)
    recording = await lock_recording(session, found, org_id=org_id)
    if recording is None or recording.status == "deleted":
        raise NotFound(NOTHING_TO_DELETE)
    return await mark_deleted(session, recording, calls=calls, now=now)


async def delete_for_good(
    db: Database,
    org_id: str,
    call_sid: str,
    *,
    calls: Calls,
    storage: Storage,
    spool: Spool,
    now: datetime,
) -> None:
    """What DELETE …/recording does (the API and the portal alike): the row marked
    deleted (NotFound when there is nothing to delete), then its file and any raw audio
    not encoded yet removed."""
    key = await db.transaction(
        partial(delete_recording, org_id=org_id, call_sid=call_sid, calls=calls, now=now)
    )
    if key is not None:
        try:
            await asyncio.to_thread(storage.delete, key)
        except OSError:
            # Already unreachable (the row says deleted); the worker's sweep retries.
            log.exception("cannot remove a deleted recording's file now")
        else:
            await db.transaction(partial(object_removed, call_sid=call_sid.lower()))
    # Not encoded yet (or never will be): its raw audio goes too.
    await asyncio.to_thread(spool.discard, call_sid.lower())
