"""The retention worker: what is past its time goes.

Idempotency keys go after 24 hours (SPEC §3); with ``MASKLINE_CALL_RETENTION_DAYS``
set, calls go after that many days, with what hangs on them (``service.py``, SPEC §10).
It runs once at start and every ``RETENTION_EVERY_SEC`` after, in the worker role.

This job crosses domains (calls, recordings, webhooks, numbers, billing, stats), so it
sits above them all: none of them needs to know the others' tables to be deleted.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.calls.idempotency import purge_expired
from maskline.kit.clock import Clock
from maskline.kit.crypto import KeyedDigest
from maskline.kit.db import Database
from maskline.kit.loops import Loops
from maskline.recordings.calls import Calls
from maskline.recordings.models import Recording
from maskline.recordings.repository import mark_deleted
from maskline.recordings.storage import Storage
from maskline.recordings.tasks import remove_deleted_files
from maskline.retention import service
from maskline.settings import Settings

log = logging.getLogger("maskline.retention")

RETENTION_EVERY_SEC = 600.0
RETENTION_BATCH = 200


class RetentionWorker:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: Settings,
        storage: Storage,
        calls: Calls,
        pair_digest: KeyedDigest,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.storage = storage
        self._calls = calls
        self._pair_digest = pair_digest
        self._loops = Loops(clock, log)

    async def start(self) -> None:
        self._loops.start("retention", self._work_once, RETENTION_EVERY_SEC)

    async def stop(self) -> None:
        await self._loops.stop()

    async def _work_once(self) -> bool:
        now = self.clock.now()
        await self.db.transaction(partial(purge_expired, now=now))
        await self.apply_call_retention()
        return False

    async def apply_call_retention(self) -> int:
        """Delete calls older than MASKLINE_CALL_RETENTION_DAYS in batches, their recording
        files first; returns how many calls were deleted."""
        days = self.settings.call_retention_days
        deleted = 0
        while days is not None:
            before = self.clock.now() - timedelta(days=days)
            sids = await self.db.transaction(partial(self._expire_calls_recordings, before=before))
            await remove_deleted_files(self.db, self.storage)
            batch = await self.db.transaction(partial(self._delete_calls, sids=sids, before=before))
            deleted += batch
            # A short batch was the last; none deleted means files could not go (next run).
            if len(sids) < RETENTION_BATCH or batch == 0 or self._loops.stopping:
                break
        return deleted

    async def _expire_calls_recordings(
        self, session: AsyncSession, *, before: datetime
    ) -> list[str]:
        """A batch of calls created before ``before``, their recordings marked deleted."""
        sids = await service.expired_calls(session, before=before, limit=RETENTION_BATCH)
        stored = (
            await session.execute(
                select(Recording).where(Recording.call_sid.in_(sids), Recording.status == "ready")
            )
        ).scalars()
        for recording in stored:
            await mark_deleted(session, recording, calls=self._calls, now=self.clock.now())
        return sids

    async def _delete_calls(
        self, session: AsyncSession, *, sids: list[str], before: datetime
    ) -> int:
        batch = await service.delete_calls(session, sids, digest=self._pair_digest)
        await service.forget_idempotency(session, before=before)
        return batch
