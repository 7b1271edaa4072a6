"""The webhook worker: claims due deliveries by lease, sends them, records the outcome.

A crash between sending and recording leaves the lease to lapse, and the
delivery is sent again: a duplicate (receivers dedupe on ``webhook-id``),
never a loss. It also gives event-feed cursors to newly committed events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from maskline.kit.clock import Clock
from maskline.kit.crypto import SecretBox
from maskline.kit.db import Database
from maskline.kit.ids import random_base62
from maskline.settings import Settings
from maskline.webhooks import delivery as sending
from maskline.webhooks.feed import assign_cursors
from maskline.webhooks.models import CallEvent, WebhookDelivery
from maskline.webhooks.service import get_endpoint, lock_endpoint, pause_endpoint
from maskline.worker.lease import Lease, lease_rows, unleased
from maskline.worker.runner import JobRunner

log = logging.getLogger("maskline.webhooks")

LEASE = timedelta(seconds=60)
BATCH = 50
CONCURRENCY = 32
UNFINISHED = ("pending", "paused")


@dataclass(frozen=True, slots=True)
class Job:
    delivery_id: str
    org_id: str
    url: str
    event_id: str
    body: bytes
    attempts: int
    to_endpoint: bool
    # The delivery's next_attempt_at when claimed: another value once the attempt is
    # recorded means `webhook set` (or a replay) made it due anew meanwhile.
    due_at: datetime | None


def _due(now: datetime) -> ColumnElement[bool]:
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        earlier.call_sid == WebhookDelivery.call_sid,
        earlier.url == WebhookDelivery.url,
        earlier.sequence < WebhookDelivery.sequence,
        earlier.status.in_(UNFINISHED),
    )
    return and_(
        WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= now,
        unleased(WebhookDelivery.lease_expires_at, now),
        # For one call and one URL, an event waits until every earlier one is settled.
        (WebhookDelivery.call_sid.is_(None)) | ~blocked,
    )


async def secrets_for(
    session: AsyncSession, org_id: str, box: SecretBox, now: datetime
) -> list[str]:
    """The signing secrets, newest first (the previous one for 24 h after a rotation)."""
    endpoint = await get_endpoint(session, org_id)
    if endpoint is None:
        # Every organisation is given its endpoint (and secret) when it is created; the
        # exception is the one a lookup that must find its row raises.
        raise NoResultFound(f"organisation {org_id} has no webhook endpoint")
    secrets = [box.decrypt(endpoint.secret_enc)]
    if (
        endpoint.previous_secret_enc
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > now
    ):
        secrets.append(box.decrypt(endpoint.previous_secret_enc))
    return secrets


async def record_outcome(
    session: AsyncSession, job: Job, result: sending.AttemptResult, *, now: datetime
) -> WebhookDelivery:
    """Record one attempt and decide what comes next (SPEC §6).

    A 410 from the organisation's endpoint disables it and pauses its deliveries; a
    410 from a per-call ``webhook_url`` fails that delivery only. A delivery paused
    while its attempt was in flight stays paused unless the attempt succeeded; a 410
    to an attempt made before ``webhook set`` released the delivery pauses nothing,
    and the delivery is due again at once.
    """
    endpoint = None
    if result.gone and job.to_endpoint:
        # The endpoint row first, then deliveries: the lock order of `lock_endpoint`.
        endpoint = await lock_endpoint(session, job.org_id)
    row = (
        await session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == job.delivery_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    row.attempts += 1
    row.last_status_code = result.status_code
    row.last_error = result.error
    row.last_latency_ms = result.latency_ms
    row.lease_owner = None
    row.lease_expires_at = None
    if result.ok:
        row.status = "succeeded"
        row.succeeded_at = now
        row.next_attempt_at = None
    elif endpoint is not None and (
        endpoint.url != job.url or (endpoint.enabled and row.next_attempt_at != job.due_at)
    ):
        # `webhook set` moved the endpoint, or set it again (which makes every unfinished
        # delivery due anew), while this attempt was in flight: a 410 from before says
        # nothing of the endpoint as set now, where the delivery goes at once.
        row.status = "pending"
        row.next_attempt_at = now
    elif endpoint is not None:
        await pause_endpoint(session, endpoint, now=now)
        row.status = "paused"
    elif result.gone and not job.to_endpoint:
        row.status = "failed"
        row.next_attempt_at = None
    elif row.status != "paused":
        retry_at = sending.next_attempt_at(row.attempts, now, result.retry_after)
        row.status = "pending" if retry_at is not None else "failed"
        row.next_attempt_at = retry_at
    await session.flush()
    return row


class WebhookWorker:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: Settings,
        box: SecretBox,
        on_attempt: Callable[[float, str], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.box = box
        self.worker_id = f"wrk_{random_base62(12)}"
        # Told each attempt's lag (seconds from due to sent) and the delivery's new status.
        self.on_attempt = on_attempt
        self._runner = JobRunner(
            self,
            name="webhook worker",
            db=db,
            clock=clock,
            log=log,
            owner=self.worker_id,
            lease=LEASE,
            batch=BATCH,
        )
        self._client = sending.new_client()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._inflight: set[asyncio.Task[None]] = set()
        self._inflight_ids: set[str] = set()

    async def start(self) -> None:
        await self._runner.start()

    def wake(self) -> None:
        self._runner.wake()

    async def stop(self) -> None:
        await self._runner.stop()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=sending.TIMEOUT_SEC + 1)
        await self._client.aclose()

    # -- the job runner's queue ----------------------------------------------

    async def tend(self) -> None:
        await self.db.transaction(assign_cursors)

    async def claim(self, session: AsyncSession, lease: Lease) -> Sequence[Job]:
        """Due deliveries, the longest due first; for one call and one URL, only the
        earliest unsettled event (SPEC §6)."""
        rows = (
            await lease_rows(
                session,
                WebhookDelivery.id,
                where=[
                    _due(lease.now),
                    # Never our own attempts still in flight, whatever their lease says.
                    WebhookDelivery.id.not_in(self._inflight_ids),
                ],
                order_by=[WebhookDelivery.next_attempt_at, WebhookDelivery.sequence],
                limit=lease.limit,
                stamp={
                    WebhookDelivery.lease_owner: lease.owner,
                    WebhookDelivery.lease_expires_at: lease.until,
                },
                returning=[
                    WebhookDelivery.id,
                    WebhookDelivery.org_id,
                    WebhookDelivery.url,
                    WebhookDelivery.event_id,
                    WebhookDelivery.attempts,
                    WebhookDelivery.to_endpoint,
                    WebhookDelivery.next_attempt_at,
                ],
            )
        ).all()
        if not rows:
            return []
        found = await session.execute(
            select(CallEvent.id, CallEvent.payload).where(
                CallEvent.id.in_([r.event_id for r in rows])
            )
        )
        payloads = {event_id: payload for event_id, payload in found}
        return [
            Job(
                r.id,
                r.org_id,
                r.url,
                r.event_id,
                payloads[r.event_id].encode(),
                r.attempts,
                r.to_endpoint,
                r.next_attempt_at,
            )
            for r in rows
        ]

    async def take(self, jobs: Sequence[Job], lease: Lease) -> None:
        """Send each delivery in a task of its own, at most ``CONCURRENCY`` at once."""
        for job in jobs:
            self._inflight_ids.add(job.delivery_id)
            await self._slots.acquire()
            task = asyncio.create_task(self._deliver(job))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _deliver(self, job: Job) -> None:
        sent_at = self.clock.now()
        try:
            row = await deliver(
                job,
                db=self.db,
                clock=self.clock,
                box=self.box,
                client=self._client,
                allow_private=self.settings.allow_private_webhooks,
            )
        except Exception:
            log.exception("delivery %s failed to run", job.delivery_id)
        else:
            if self.on_attempt is not None:
                lag = 0.0 if job.due_at is None else (sent_at - job.due_at).total_seconds()
                self.on_attempt(lag, row.status)
        finally:
            self._inflight_ids.discard(job.delivery_id)
            self._slots.release()
            # An earlier event settled: a later one of the same call may be due now.
            self._runner.wake()


async def deliver(
    job: Job,
    *,
    db: Database,
    clock: Clock,
    box: SecretBox,
    client: httpx.AsyncClient,
    allow_private: bool,
) -> WebhookDelivery:
    """Make one attempt of ``job`` and record its outcome (used by the worker and the CLI).

    An attempt that raises is recorded as a failed attempt, so the retry schedule
    runs on: otherwise the lease would lapse and the delivery go out again and again,
    holding back the call's later events.
    """
    now = clock.now()
    try:
        async with db.read() as session:
            secrets = await secrets_for(session, job.org_id, box, now)
        result = await sending.attempt(
            client,
            url=job.url,
            body=job.body,
            msg_id=job.event_id,
            secrets=secrets,
            timestamp=int(now.timestamp()),
            allow_private=allow_private,
            now=now,
        )
    except Exception as exc:
        log.exception("delivery %s: the attempt failed to run", job.delivery_id)
        result = sending.AttemptResult(False, None, f"internal error: {exc.__class__.__name__}", 0)
    recorded_at = clock.now()
    return await db.transaction(
        lambda session: record_outcome(session, job, result, now=recorded_at)
    )
