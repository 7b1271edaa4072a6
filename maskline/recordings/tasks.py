"""The recording worker: spool → MP3 → storage → ``recording.ready``; and the
recordings' retention.

Encoding is CPU work and runs in a thread, one recording at a time per worker,
never on a call's path. A pending row is claimed by lease, which the worker
renews while it holds the job (encoding it, or waiting its turn in the batch), so
a slow encode is never taken by a second worker; a worker that dies mid-encode
leaves the lease to lapse and another encodes it again from the spool, which is
only removed once the outcome is committed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.clock import Clock
from maskline.kit.db import Database
from maskline.kit.ids import random_base62
from maskline.kit.logging import call_sid_var
from maskline.recordings.calls import Calls
from maskline.recordings.encode import Aborted, SpoolMissing, encode_mp3
from maskline.recordings.models import Recording
from maskline.recordings.repository import lock_recording, mark_deleted, object_removed
from maskline.recordings.storage import Storage, object_key
from maskline.settings import Settings
from maskline.telephony.events import Leg
from maskline.telephony.media.recorder import Spool
from maskline.worker.lease import Lease, lease_rows, unleased
from maskline.worker.runner import JobRunner

log = logging.getLogger("maskline.recordings")

LEASE = timedelta(minutes=10)
BATCH = 4
# Wake-ups faster than this are served by one round (its own transactions, two). Every
# committed event wakes this worker and few are a recording's: at 0.1 s its rounds, most
# claiming nothing, were a tenth of all transactions at 10 calls a second. A recording
# is encoded at most this much later.
SETTLE_SEC = 1.0
MAX_ATTEMPTS = 3
RETRY_AFTER = timedelta(seconds=30)
RETENTION_EVERY_SEC = 600.0
SWEEP_EVERY_SEC = 5.0
RETENTION_BATCH = 200


@dataclass(frozen=True, slots=True)
class Job:
    call_sid: str
    org_id: str
    attempts: int


@dataclass(frozen=True, slots=True)
class _Held:
    """A job's row as a transaction found it: still this worker's (locked), or not."""

    recording: Recording | None
    deleted: bool


class _Published(enum.Enum):
    READY = "ready"
    DELETED = "deleted"
    TAKEN_OVER = "taken over"


class RecordingWorker:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: Settings,
        spool: Spool,
        storage: Storage,
        calls: Calls,
        on_events: Callable[[], None],
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.spool = spool
        self.storage = storage
        self.calls = calls
        self.worker_id = f"rec_{random_base62(12)}"
        self._on_events = on_events
        self._runner = JobRunner(
            self,
            name="recording worker",
            db=db,
            clock=clock,
            log=log,
            owner=self.worker_id,
            lease=LEASE,
            batch=BATCH,
            # Woken by every committed event, most of them no recording's.
            settle=SETTLE_SEC,
            renew=self._renew_leases,
        )
        # The jobs this worker has claimed and not yet settled: their leases are renewed.
        self._held: set[str] = set()
        self._next_retention = 0.0
        self._next_sweep = 0.0
        self._abort = threading.Event()

    async def start(self) -> None:
        await self._runner.start()

    def wake(self) -> None:
        self._runner.wake()

    async def stop(self) -> None:
        self._abort.set()  # an encode in progress gives its job back instead of finishing
        await self._runner.stop()

    # -- the job runner's queue ----------------------------------------------

    async def tend(self) -> None:
        if self.clock.monotonic() >= self._next_retention:
            await self.apply_retention()
            self._next_retention = self.clock.monotonic() + RETENTION_EVERY_SEC
        # Jobs whose every attempt died with a worker (their leases lapsed): a few seconds
        # late is soon enough, and not a write transaction for every committed event.
        if asyncio.get_running_loop().time() < self._next_sweep:
            return
        self._next_sweep = asyncio.get_running_loop().time() + SWEEP_EVERY_SEC
        failed = await self.db.transaction(self._fail_exhausted)
        # Their audio goes once the failure is committed.
        for call_sid in failed:
            self.spool.discard(call_sid)

    async def claim(self, session: AsyncSession, lease: Lease) -> Sequence[Job]:
        """Pending recordings due for an attempt, the longest due first; the attempt is
        counted as it is claimed."""
        rows = await lease_rows(
            session,
            Recording.call_sid,
            where=[
                Recording.status == "pending",
                Recording.attempts < MAX_ATTEMPTS,
                Recording.next_attempt_at <= lease.now,
                unleased(Recording.lease_expires_at, lease.now),
            ],
            order_by=[Recording.next_attempt_at],
            limit=lease.limit,
            stamp={
                Recording.lease_owner: lease.owner,
                Recording.lease_expires_at: lease.until,
                Recording.attempts: Recording.attempts + 1,
            },
            returning=[Recording.call_sid, Recording.org_id, Recording.attempts],
        )
        return [Job(r.call_sid, r.org_id, r.attempts) for r in rows]

    async def take(self, jobs: Sequence[Job], lease: Lease) -> None:
        """Encode the claimed recordings one after the other."""
        self._held.update(job.call_sid for job in jobs)
        try:
            for job in jobs:
                if self._runner.stopping:
                    break  # the lease lapses and the next worker picks it up
                await self._encode(job)
                self._held.discard(job.call_sid)
        finally:
            self._held.difference_update(job.call_sid for job in jobs)

    async def _renew_leases(self) -> None:
        """Extend the leases of the jobs this worker holds. An encode may outlast the
        lease on a slow machine; lapsed, another worker would claim and encode it too."""
        held = list(self._held)
        if not held:
            return

        async def renew(session: AsyncSession, lease: Lease) -> None:
            await lease_rows(
                session,
                Recording.call_sid,
                where=[
                    Recording.call_sid.in_(held),
                    Recording.lease_owner == lease.owner,
                    Recording.status == "pending",
                ],
                stamp={Recording.lease_expires_at: lease.until},
                returning=[Recording.call_sid],
            )

        await self._runner.leased(renew)

    async def _fail_exhausted(self, session: AsyncSession) -> list[str]:
        """Jobs whose every attempt died with its worker (a crash, not an error) fail;
        returns their calls, whose spooled audio the caller discards after the commit."""
        now = self.clock.now()
        stuck = list(
            (
                await session.execute(
                    update(Recording)
                    .where(
                        Recording.status == "pending",
                        Recording.attempts >= MAX_ATTEMPTS,
                        Recording.lease_expires_at < now,
                    )
                    .values(status="failed", lease_owner=None, last_error="worker died")
                    .returning(Recording.call_sid)
                )
            ).scalars()
        )
        if stuck:
            await self.calls.set_recording_status(session, stuck, "failed")
        return stuck

    async def _encode(self, job: Job) -> None:
        call_sid_var.set(job.call_sid)
        legs = self.spool.paths(job.call_sid)
        # Per worker: two workers on one data dir never write the same staged file.
        staged = self.spool.directory / f"{job.call_sid}.{self.worker_id}.mp3"
        key = object_key(job.org_id, job.call_sid)
        try:
            seconds = await self._bridge_seconds(job.call_sid)
            encoded = await asyncio.to_thread(
                partial(encode_mp3, seconds=seconds, abort=self._abort),
                legs[Leg.A],
                legs[Leg.B],
                staged,
            )
            size = await asyncio.to_thread(self.storage.put, key, staged)
        except Aborted:
            await self._release(job)
        except SpoolMissing as exc:
            # Retrying cannot bring the audio back (e.g. an engine and a worker that do
            # not share MASKLINE_DATA_DIR): the recording failed for good (SPEC §5).
            await self._give_up(job, str(exc))
        except Exception as exc:
            log.exception("encoding failed (attempt %d)", job.attempts)
            await self._retry_or_give_up(job, f"{type(exc).__name__}: {exc}")
        else:
            await self._publish(job, key, duration_ms=encoded.duration_ms, size=size)

    async def _bridge_seconds(self, call_sid: str) -> float | None:
        """How long the call was bridged: the recording's length (SPEC §5)."""
        async with self.db.read() as session:
            # None is not expected of a recorded call: then the spool decides.
            return await self.calls.bridged_seconds(session, call_sid)

    async def _release(self, job: Job) -> None:
        """Shutting down mid-encode: hand the job back at once, this attempt uncounted."""

        async def release(session: AsyncSession) -> _Held:
            held = await self._mine(session, job)
            if held.recording is not None:
                held.recording.attempts = max(0, held.recording.attempts - 1)
                held.recording.lease_owner = None
                held.recording.lease_expires_at = None
            return held

        self._discard_if_deleted(job, await self.db.transaction(release))

    async def _mine(self, session: AsyncSession, job: Job) -> _Held:
        """The job's row if this worker still holds it (locked), and whether it was deleted."""
        recording = await lock_recording(session, job.call_sid)
        if recording is not None and recording.status == "deleted":
            return _Held(None, deleted=True)
        if recording is None or recording.lease_owner != self.worker_id:
            return _Held(None, deleted=False)
        return _Held(recording, deleted=False)

    def _discard_if_deleted(self, job: Job, held: _Held) -> None:
        """A deleted recording loses its spooled audio, once the transaction that saw
        it is over (a file removed cannot be rolled back with a transaction run again)."""
        if held.deleted:
            self.spool.discard(job.call_sid)

    async def _publish(self, job: Job, key: str, *, duration_ms: int, size: int) -> None:
        now = self.clock.now()

        async def publish(session: AsyncSession) -> _Published:
            recording = await lock_recording(session, job.call_sid)
            if recording is None or recording.status == "deleted":
                return _Published.DELETED
            if recording.lease_owner != self.worker_id:
                return _Published.TAKEN_OVER
            recording.status = "ready"
            recording.object_key = key
            recording.duration_ms = duration_ms
            recording.size_bytes = size
            recording.ready_at = now
            recording.lease_owner = None
            recording.lease_expires_at = None
            recording.last_error = None
            await self.calls.recording_ready(session, job.call_sid, now=now)
            return _Published.READY

        outcome = await self.db.transaction(publish)
        if outcome is _Published.TAKEN_OVER:
            return  # another worker took it over and publishes the same key
        if outcome is _Published.DELETED:
            # Deleted while we encoded: the file must not outlive the deletion.
            await asyncio.to_thread(self.storage.delete, key)
        self.spool.discard(job.call_sid)
        if outcome is _Published.READY:
            self._on_events()

    async def _retry_or_give_up(self, job: Job, error: str) -> None:
        if job.attempts >= MAX_ATTEMPTS:
            await self._give_up(job, error)
            return

        async def retry_later(session: AsyncSession) -> _Held:
            held = await self._mine(session, job)
            if held.recording is not None:
                held.recording.last_error = error
                held.recording.lease_owner = None
                held.recording.lease_expires_at = None
                held.recording.next_attempt_at = self.clock.now() + RETRY_AFTER * job.attempts
            return held

        self._discard_if_deleted(job, await self.db.transaction(retry_later))

    async def _give_up(self, job: Job, error: str) -> None:
        async def give_up(session: AsyncSession) -> _Held:
            held = await self._mine(session, job)
            recording = held.recording
            if recording is None:
                return held
            if recording.status == "pending":
                recording.status = "failed"
                await self.calls.set_recording_status(session, [job.call_sid], "failed")
            recording.last_error = error
            recording.lease_owner = None
            recording.lease_expires_at = None
            return held

        held = await self.db.transaction(give_up)
        if held.recording is None:
            self._discard_if_deleted(job, held)
            return
        log.error("recording failed for good: %s", error)
        self.spool.discard(job.call_sid)

    async def apply_retention(self) -> int:
        """Delete recordings older than MASKLINE_RECORDING_RETENTION_DAYS, and every file a
        deletion left behind; returns how many recordings the retention deleted. (Calls
        past their own retention go with their recordings in ``retention.tasks``.)"""
        removed = 0
        days = self.settings.recording_retention_days
        while days is not None:
            expire = partial(
                self._expire_recordings, before=self.clock.now() - timedelta(days=days)
            )
            expired = await self.db.transaction(expire)
            removed += expired
            if expired < RETENTION_BATCH:
                break
        await remove_deleted_files(self.db, self.storage)
        return removed

    async def _expire_recordings(self, session: AsyncSession, *, before: datetime) -> int:
        """Mark a batch of recordings ready since before ``before`` deleted; how many."""
        now = self.clock.now()
        expired = list(
            (
                await session.execute(
                    select(Recording)
                    .where(Recording.status == "ready", Recording.ready_at < before)
                    .limit(RETENTION_BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).scalars()
        )
        for recording in expired:
            await mark_deleted(session, recording, calls=self.calls, now=now)
        return len(expired)


async def remove_deleted_files(db: Database, storage: Storage) -> None:
    """The rows say deleted first (no URL serves them); then the files go."""
    while True:
        async with db.read() as session:
            left = (
                await session.execute(
                    select(Recording.call_sid, Recording.object_key)
                    .where(Recording.status == "deleted", Recording.object_key.is_not(None))
                    .limit(RETENTION_BATCH)
                )
            ).all()
        for call_sid, key in left:
            assert key is not None
            try:
                await asyncio.to_thread(storage.delete, key)
            except OSError:
                log.exception("cannot remove a deleted recording's file; will retry")
                return
            await db.transaction(partial(object_removed, call_sid=call_sid))
        if len(left) < RETENTION_BATCH:
            return
