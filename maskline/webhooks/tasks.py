"""The webhook worker: claims due deliveries by lease, sends them, records the outcome.

A crash between sending and recording leaves the lease to lapse, and the
delivery is sent again: a duplicate (receivers dedupe on ``webhook-id``),
never a loss. It also gives event-feed cursors to newly committed events, in a
claim round at most every ``FEED_EVERY_SEC``.

At rate (issue 15): connections are kept alive per destination
(``delivery.Clients``); each endpoint URL has a lane of its own with at most
``PER_ENDPOINT`` attempts at once and ``BACKLOG`` more claimed behind them, and a
circuit that stops claiming for a URL that keeps failing (``Lane``), so a slow or
dead receiver holds its own deliveries back and no one else's; the signing secrets
are decrypted once per organisation and again only when the stored ones change
(``SecretCache``); DNS answers are kept for their TTL (``ssrf.HostResolver``) and
checked at every attempt; the outcomes of many attempts are written together, in
one statement (``Outcomes``); and the claim loop is woken when an outcome may have
made a later event due, or when a lane it had to leave out has room again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cachetools import LRUCache
from sqlalchemy import (
    Boolean,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.clock import Clock
from maskline.kit.crypto import SecretBox
from maskline.kit.db import Database
from maskline.kit.ids import random_base62
from maskline.kit.scope import owned_by
from maskline.settings import Settings
from maskline.webhooks import delivery as sending
from maskline.webhooks.feed import assign_cursors
from maskline.webhooks.models import CallEvent, WebhookDelivery, WebhookEndpoint
from maskline.webhooks.service import get_endpoint, lock_endpoint, pause_endpoint
from maskline.webhooks.ssrf import HostResolver
from maskline.worker.lease import Lease, lease_statement, unleased
from maskline.worker.runner import JobRunner

log = logging.getLogger("maskline.webhooks")

LEASE = timedelta(seconds=60)
BATCH = 100
# Attempts at once, all endpoints together, and to one endpoint URL.
CONCURRENCY = 256
PER_ENDPOINT = sending.CONNECTIONS_PER_DESTINATION
# Claimed deliveries of one URL waiting for its lane: few enough that a slow receiver
# (10 s timeouts, PER_ENDPOINT at once) works through them well within the lease.
BACKLOG = 48
# Claimed deliveries held at most, all endpoints together.
HELD = 2048
# The circuit of an endpoint URL: open after this many failures in a row (no answer,
# 5xx, 429), for OPEN_FIRST, doubling each time the one attempt let through (half
# open) fails too, up to OPEN_MOST. While open nothing is claimed for the URL: its
# deliveries wait, due, and no attempt of theirs is spent.
FAILURES_TO_OPEN = 5
OPEN_FIRST = timedelta(seconds=5)
OPEN_MOST = timedelta(minutes=5)
# Outcomes written in one statement at most.
FLUSH = 512
# A worker moves a URL's deliveries to its circuit's reopening (``_hold_back``) only
# once some receiver has answered one of its attempts (any status) this recently: then
# its own network works, and the failures are the URL's. A worker that cannot reach
# anyone holds back nothing, so other workers deliver what it cannot.
HEARD_WITHIN = timedelta(seconds=10)
# Wake-ups (one per committed event) faster than this are served by one round: at 100
# calls a second, 500 events, a round each would cost more than the deliveries. The
# outcomes are written at most this often too.
SETTLE_SEC = 0.02
SECRETS_CACHED = 4096
# The event feed's cursors are given by a claim round at most this often (a round that
# leaves them has the runner woken when the time is up). Given by every round, 50 a
# second at rate, the feed's lock and its numbering were about half of the worker's
# database work (py-spy, at 50 calls a second).
FEED_EVERY_SEC = 0.2
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
    # The organisation's signing secrets as stored when claimed (the worker's); None:
    # read them when sending (``deliver``).
    keys: SigningKeys | None = None
    call_sid: str | None = None


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """An organisation's decrypted secrets: the current one, and the previous one
    until it expires (24 h after a rotation)."""

    current: str
    previous: str | None
    previous_expires_at: datetime | None

    def at(self, now: datetime) -> list[str]:
        """The signing secrets at ``now``, newest first (SPEC §6)."""
        if (
            self.previous is not None
            and self.previous_expires_at is not None
            and self.previous_expires_at > now
        ):
            return [self.current, self.previous]
        return [self.current]


class SecretCache:
    """Each organisation's secrets, decrypted once. The claim reads the stored
    (encrypted) values with the deliveries: a rotation, in any process, changes them,
    and the first delivery claimed after its commit is signed with the new secret."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box
        self._keys: LRUCache[str, tuple[tuple[str, str | None, datetime | None], SigningKeys]]
        self._keys = LRUCache(maxsize=SECRETS_CACHED)

    def keys(
        self,
        org_id: str,
        secret_enc: str,
        previous_enc: str | None,
        previous_expires_at: datetime | None,
    ) -> SigningKeys:
        stored = (secret_enc, previous_enc, previous_expires_at)
        cached = self._keys.get(org_id)
        if cached is not None and cached[0] == stored:
            return cached[1]
        keys = SigningKeys(
            current=self._box.decrypt(secret_enc),
            previous=None if previous_enc is None else self._box.decrypt(previous_enc),
            previous_expires_at=previous_expires_at,
        )
        self._keys[org_id] = (stored, keys)
        return keys


@dataclass(eq=False, slots=True)
class Lane:
    """One endpoint URL in this worker: its attempts at once, what is claimed for it,
    and its circuit."""

    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(PER_ENDPOINT))
    # Claimed and not yet answered (waiting for a slot, or in flight).
    held: int = 0
    failures: int = 0
    open_until: datetime | None = None
    opened_for: timedelta = timedelta(0)

    # Half open: the one attempt let through is in flight.
    probing: bool = False

    def claimable(self, now: datetime) -> bool:
        if self.open_until is not None:
            # Open: nothing; half open (the time is up): one attempt at a time.
            return self.open_until <= now and self.held == 0
        return self.held < PER_ENDPOINT + BACKLOG

    def admit(self, now: datetime) -> tuple[bool, bool]:
        """Whether a claimed delivery may be attempted now, and whether it is the one
        attempt of a half-open circuit. Those claimed before the circuit opened wait."""
        if self.open_until is None:
            return True, False
        if self.open_until > now or self.probing:
            return False, False
        self.probing = True
        return True, True

    def answered(self, result: sending.AttemptResult, now: datetime, *, probe: bool) -> bool:
        """Take an attempt's answer; whether it opened the circuit (or kept it open)."""
        if probe:
            self.probing = False
        unavailable = result.status_code is None or result.status_code in (429,)
        unavailable = unavailable or (result.status_code or 0) >= 500
        if not unavailable:
            self.failures, self.open_until, self.opened_for = 0, None, timedelta(0)
            return False
        self.failures += 1
        if probe or (self.open_until is None and self.failures >= FAILURES_TO_OPEN):
            self.opened_for = min(max(self.opened_for * 2, OPEN_FIRST), OPEN_MOST)
            self.open_until = now + self.opened_for
            log.warning(
                "endpoint circuit open for %s s after %s failures in a row",
                int(self.opened_for.total_seconds()),
                self.failures,
            )
            return True
        return False

    def until(self, now: datetime) -> datetime | None:
        """When the circuit lets an attempt through, if it is open now."""
        return self.open_until if self.open_until is not None and self.open_until > now else None

    @property
    def idle(self) -> bool:
        return self.held == 0 and self.failures == 0


@functools.cache
def _claim(excluding: bool) -> Any:
    """The claim (``lease_statement``), built once: due deliveries, the longest due
    first; for one call and one URL only the earliest unsettled event (SPEC §6); with
    ``excluding``, none to the URLs ``b_excluded``. Run with ``b_now``, ``b_owner``,
    ``b_until`` and ``b_limit``."""
    t = _table(WebhookDelivery)
    earlier = t.alias("earlier")
    now = bindparam("b_now", type_=t.c.next_attempt_at.type)
    blocked = exists().where(
        earlier.c.call_sid == t.c.call_sid,
        earlier.c.url == t.c.url,
        earlier.c.sequence < t.c.sequence,
        earlier.c.status.in_(UNFINISHED),
    )
    where = [
        t.c.status == "pending",
        t.c.next_attempt_at <= now,
        unleased(t.c.lease_expires_at, now),
    ]
    if excluding:
        # Before the costlier test below: SQLite tests a row's terms in this order, and
        # an excluded URL's due rows lie at the head of the order (a slow receiver's
        # backlog is the longest due), to be passed over at every claim.
        where.append(t.c.url.not_in(bindparam("b_excluded", expanding=True)))
    # For one call and one URL, an event waits until every earlier one is settled.
    where.append(t.c.call_sid.is_(None) | ~blocked)
    return lease_statement(
        t.c.id,
        where=where,
        order_by=[t.c.next_attempt_at, t.c.sequence],
        limit=bindparam("b_limit", type_=Integer()),
        stamp={
            t.c.lease_owner: bindparam("b_owner", type_=t.c.lease_owner.type),
            t.c.lease_expires_at: bindparam("b_until", type_=t.c.lease_expires_at.type),
        },
        returning=[
            t.c.id,
            t.c.org_id,
            t.c.url,
            t.c.event_id,
            t.c.attempts,
            t.c.to_endpoint,
            t.c.next_attempt_at,
            t.c.call_sid,
        ],
    )


def _table(model: type[WebhookDelivery]) -> Table:
    return model.metadata.tables[model.__tablename__]


@functools.cache
def _record_attempts() -> Any:
    """One attempt's outcome, for many deliveries at once (the driver's executemany):
    what ``record_outcome`` does for every answer but a 410 from an endpoint."""
    t = _table(WebhookDelivery)
    ok = bindparam("b_ok", type_=Boolean())
    paused = t.c.status == "paused"
    return (
        update(t)
        .where(t.c.id == bindparam("b_id"))
        .values(
            attempts=t.c.attempts + 1,
            last_status_code=bindparam("b_code", type_=t.c.last_status_code.type),
            last_error=bindparam("b_error", type_=t.c.last_error.type),
            last_latency_ms=bindparam("b_latency", type_=t.c.last_latency_ms.type),
            lease_owner=None,
            lease_expires_at=None,
            # A delivery paused while its attempt was in flight stays paused unless it
            # succeeded; a 410 from a per-call URL fails it at once.
            status=case(
                (ok, "succeeded"),
                (paused, "paused"),
                else_=bindparam("b_status", type_=t.c.status.type),
            ),
            succeeded_at=case(
                (ok, bindparam("b_now", type_=t.c.succeeded_at.type)), else_=t.c.succeeded_at
            ),
            next_attempt_at=case(
                (ok, None),
                (paused, t.c.next_attempt_at),
                else_=bindparam("b_next", type_=t.c.next_attempt_at.type),
            ),
        )
    )


@functools.cache
def _release() -> Any:
    """Give back deliveries claimed and not attempted (their endpoint's circuit opened
    meanwhile): no attempt spent, due when the circuit lets one through (``b_next``), or
    as they are if it has closed again, or if ``webhook set`` moved the delivery while
    it was held (another URL, or due anew: ``b_url`` and ``b_due`` as claimed)."""
    t = _table(WebhookDelivery)
    next_at = bindparam("b_next", type_=t.c.next_attempt_at.type)
    as_claimed = and_(
        t.c.url == bindparam("b_url", type_=t.c.url.type),
        t.c.next_attempt_at == bindparam("b_due", type_=t.c.next_attempt_at.type),
    )
    return (
        update(t)
        .where(t.c.id == bindparam("b_id"), t.c.lease_owner == bindparam("b_owner"))
        .values(
            lease_owner=None,
            lease_expires_at=None,
            next_attempt_at=case(
                (as_claimed, func.coalesce(next_at, t.c.next_attempt_at)),
                else_=t.c.next_attempt_at,
            ),
        )
    )


@functools.cache
def _hold_back() -> Any:
    """Move the unleased deliveries to a URL whose circuit opened (``b_url``) that fall
    due before it lets an attempt through (``b_until``) to that time: out of the head of
    the due order, where every claim (of every worker) would pass over them while it
    stays open (a dead receiver's backlog). Their order and attempts are kept; a
    delivery replayed meanwhile waits for the circuit too. Leased ones are their
    holder's to record (ours are given back with ``_release``)."""
    t = _table(WebhookDelivery)
    until = bindparam("b_until", type_=t.c.next_attempt_at.type)
    return (
        update(t)
        .where(
            t.c.status == "pending",
            t.c.next_attempt_at < until,
            t.c.url == bindparam("b_url", type_=t.c.url.type),
            unleased(t.c.lease_expires_at, bindparam("b_now", type_=t.c.next_attempt_at.type)),
        )
        .values(next_attempt_at=until)
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    job: Job
    result: sending.AttemptResult
    at: datetime

    @property
    def simple(self) -> bool:
        """Written by ``_record_attempts``: all but a 410 from the endpoint, which pauses it."""
        return not (self.result.gone and self.job.to_endpoint)

    @property
    def status(self) -> str:
        """The delivery's status once recorded (a paused delivery stays paused)."""
        if self.result.ok:
            return "succeeded"
        if self.result.gone:
            return "paused" if self.job.to_endpoint else "failed"
        retry_at = sending.next_attempt_at(self.job.attempts + 1, self.at, None)
        return "pending" if retry_at is not None else "failed"

    def values(self) -> dict[str, Any]:
        result = self.result
        if result.gone:
            status, retry_at = "failed", None
        else:
            retry_at = sending.next_attempt_at(self.job.attempts + 1, self.at, result.retry_after)
            status = "pending" if retry_at is not None else "failed"
        return {
            "b_id": self.job.delivery_id,
            "b_ok": result.ok,
            "b_code": result.status_code,
            "b_error": result.error,
            "b_latency": result.latency_ms,
            "b_status": status,
            "b_now": self.at,
            "b_next": retry_at,
        }


async def record_outcomes(
    session: AsyncSession,
    outcomes: Sequence[Outcome],
    *,
    released: Sequence[tuple[Job, datetime | None]] = (),
    held_back: Mapping[str, datetime] | None = None,
    owner: str = "",
    now: datetime | None = None,
) -> None:
    """Record many attempts in one transaction: one statement for them all, and the
    rare 410 from an endpoint (which pauses it) one by one, first (its lock order);
    then give back the ``released`` deliveries, not attempted, each due when its
    circuit lets one through, in one more; and hold back the due deliveries to each URL of
    ``held_back`` (its circuit just opened) until then, one statement a URL."""
    for outcome in outcomes:
        if not outcome.simple:
            await record_outcome(session, outcome.job, outcome.result, now=outcome.at)
    # After any 410's endpoint row: `lock_endpoint`'s order, the endpoint before its
    # deliveries.
    if released:
        await session.execute(
            _release(),
            [
                {
                    "b_id": job.delivery_id,
                    "b_owner": owner,
                    "b_next": next_at,
                    "b_url": job.url,
                    "b_due": job.due_at,
                }
                for job, next_at in released
            ],
        )
    for url, until in (held_back or {}).items():
        await session.execute(_hold_back(), {"b_url": url, "b_until": until, "b_now": now})
    simple = [outcome.values() for outcome in outcomes if outcome.simple]
    if simple:
        await session.execute(_record_attempts(), simple)


async def signing_keys(session: AsyncSession, org_id: str, box: SecretBox) -> SigningKeys:
    """The organisation's signing secrets, read and decrypted now."""
    endpoint = await get_endpoint(session, org_id)
    if endpoint is None:
        # Every organisation is given its endpoint (and secret) when it is created; the
        # exception is the one a lookup that must find its row raises.
        raise NoResultFound(f"organisation {org_id} has no webhook endpoint")
    return SigningKeys(
        current=box.decrypt(endpoint.secret_enc),
        previous=None
        if endpoint.previous_secret_enc is None
        else box.decrypt(endpoint.previous_secret_enc),
        previous_expires_at=endpoint.previous_secret_expires_at,
    )


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
        resolver: HostResolver | None = None,
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
            settle=SETTLE_SEC,
        )
        self._clients = sending.Clients(ca_file=settings.webhook_ca_file)
        self._resolver = resolver or HostResolver(now=lambda: clock.now().timestamp())
        self._secrets = SecretCache(box)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._lanes: dict[str, Lane] = {}
        # URLs the last claim left out for want of room in their lane (or all of them,
        # when HELD were held): the loop is woken when one has room again.
        self._left_out: set[str] = set()
        self._all_left_out = False
        self._held = 0
        self._inflight: set[asyncio.Task[None]] = set()
        # Claimed, and not yet recorded: never claimed again, whatever the lease says.
        self._inflight_ids: set[str] = set()
        self._outcomes: list[Outcome] = []
        # Claimed, not attempted (their circuit opened): to give back, with their lane.
        self._released: list[tuple[Job, Lane]] = []
        # URLs whose circuit opened, and until when: their due deliveries to hold back
        # once a receiver is heard (``HEARD_WITHIN``), if the circuit is still open then.
        self._to_hold: dict[str, datetime] = {}
        # When a receiver last answered one of this worker's attempts (HEARD_WITHIN).
        self._heard_at: datetime | None = None
        self._outcome_ready = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None
        self._stopping = False
        # When a claim round next gives the feed's cursors (the loop's clock), and the
        # wake-up armed for then by a round that left them.
        self._next_feed = 0.0
        self._feed_wake: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self._recorder = asyncio.create_task(self._record_loop(), name="webhook outcomes")
        await self._runner.start()

    def wake(self) -> None:
        self._runner.wake()

    async def stop(self) -> None:
        await self._runner.stop()
        if self._feed_wake is not None:
            self._feed_wake.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=sending.TIMEOUT_SEC + 1)
        self._stopping = True
        self._outcome_ready.set()
        if self._recorder is not None:
            await self._recorder
        await self._clients.aclose()

    # -- the job runner's queue ----------------------------------------------

    async def tend(self) -> None:
        # While claiming, a claim's transaction gives the cursors (``FEED_EVERY_SEC``).
        if not self._runner.claiming:
            await self.db.transaction(assign_cursors)

    def _excluded(self, now: datetime) -> list[str]:
        excluded = [url for url, lane in self._lanes.items() if not lane.claimable(now)]
        self._left_out = set(excluded)
        return excluded

    async def claim(self, session: AsyncSession, lease: Lease) -> Sequence[Job]:
        """Due deliveries, the longest due first; for one call and one URL, only the
        earliest unsettled event (SPEC §6); none for a URL whose lane is full or whose
        circuit is open. New events are given their feed cursors first (``feed``), at
        most every ``FEED_EVERY_SEC``."""
        if self._feed_due():
            await assign_cursors(session)
        self._all_left_out = self._held >= HELD
        if self._all_left_out:
            return []
        excluded = self._excluded(lease.now)
        params: dict[str, Any] = {
            "b_now": lease.now,
            "b_owner": lease.owner,
            "b_until": lease.until,
            "b_limit": min(lease.limit, HELD - self._held),
        }
        if excluded:
            params["b_excluded"] = excluded
        rows = (await session.execute(_claim(bool(excluded)), params)).all()
        # Never our own attempts still in flight, whatever their lease says (one whose
        # lease lapsed mid-attempt is leased to us again, and left to its attempt). Not
        # a NOT IN of them in the claim: a statement of another text, to parse and
        # plan, for every number of them.
        rows = [r for r in rows if r.id not in self._inflight_ids]
        if not rows:
            return []
        found = await session.execute(
            select(
                CallEvent.id,
                CallEvent.payload,
                WebhookEndpoint.secret_enc,
                WebhookEndpoint.previous_secret_enc,
                WebhookEndpoint.previous_secret_expires_at,
            )
            .outerjoin(WebhookEndpoint, owned_by(WebhookEndpoint, CallEvent.org_id))
            .where(CallEvent.id.in_([r.event_id for r in rows]))
        )
        events = {row.id: row for row in found}
        jobs = []
        for r in rows:
            event = events[r.event_id]
            if event.secret_enc is None:
                # Every organisation is given its endpoint (and secret) when it is created.
                raise NoResultFound(f"organisation {r.org_id} has no webhook endpoint")
            keys = self._secrets.keys(
                r.org_id,
                event.secret_enc,
                event.previous_secret_enc,
                event.previous_secret_expires_at,
            )
            jobs.append(
                Job(
                    r.id,
                    r.org_id,
                    r.url,
                    r.event_id,
                    event.payload.encode(),
                    r.attempts,
                    r.to_endpoint,
                    r.next_attempt_at,
                    keys,
                    r.call_sid,
                )
            )
        return jobs

    def _feed_due(self) -> bool:
        """Whether this round gives the feed's cursors. One that does not has the runner
        woken once their time is up, so the events committed meanwhile get theirs then
        even if nothing else wakes it (a round run again by the writer, its first run
        rolled back, leaves them to that round too)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._next_feed:
            self._next_feed = now + FEED_EVERY_SEC
            return True
        if self._feed_wake is None:

            def due() -> None:
                self._feed_wake = None
                self._runner.wake()

            self._feed_wake = loop.call_at(self._next_feed, due)
        return False

    async def take(self, jobs: Sequence[Job], lease: Lease) -> None:
        """Send each delivery in a task of its own: at most ``PER_ENDPOINT`` at once to
        one URL, ``CONCURRENCY`` in all."""
        for job in jobs:
            self._inflight_ids.add(job.delivery_id)
            lane = self._lanes.get(job.url)
            if lane is None:
                lane = self._lanes[job.url] = Lane()
            lane.held += 1
            self._held += 1
            task = asyncio.create_task(self._deliver(job, lane))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _deliver(self, job: Job, lane: Lane) -> None:
        async with lane.slots, self._slots:
            sent_at = self.clock.now()
            admitted, probe = lane.admit(sent_at)
            if admitted:
                result = await _attempt(
                    job,
                    clients=self._clients,
                    resolver=self._resolver,
                    allow_private=self.settings.allow_private_webhooks,
                    now=sent_at,
                )
        lane.held -= 1
        self._held -= 1
        if not admitted:
            self._released.append((job, lane))
            self._outcome_ready.set()
        else:
            answered_at = self.clock.now()
            if result.status_code is not None:
                self._heard_at = answered_at
            if lane.answered(result, answered_at, probe=probe) and lane.open_until is not None:
                self._to_hold[job.url] = lane.open_until
            outcome = Outcome(job, result, answered_at)
            self._outcomes.append(outcome)
            self._outcome_ready.set()
            if self.on_attempt is not None:
                lag = 0.0 if job.due_at is None else (sent_at - job.due_at).total_seconds()
                self.on_attempt(lag, outcome.status)
        if (job.url in self._left_out and lane.held <= PER_ENDPOINT) or (
            self._all_left_out and self._held <= HELD // 2
        ):
            # The last claim left this URL out (or claimed nothing): it has room again.
            self._left_out.discard(job.url)
            self._all_left_out = False
            self._runner.wake()
        if lane.idle and lane.open_until is None:
            self._lanes.pop(job.url, None)

    def _heard_lately(self, now: datetime) -> bool:
        return self._heard_at is not None and now - self._heard_at <= HEARD_WITHIN

    def _holds(self, now: datetime) -> dict[str, datetime]:
        """The URLs to hold back now: none until a receiver is heard; a circuit that has
        let an attempt through since is forgotten."""
        self._to_hold = {url: until for url, until in self._to_hold.items() if until > now}
        if not self._to_hold or not self._heard_lately(now):
            return {}
        holds, self._to_hold = self._to_hold, {}
        return holds

    async def _record_loop(self) -> None:
        """Write the outcomes that arrived while the last write ran, together: one write
        at most every ``SETTLE_SEC``, as the claim rounds (each answer used to be a
        transaction of its own when they came one by one)."""
        loop = asyncio.get_running_loop()
        began = loop.time() - SETTLE_SEC
        while True:
            await self._outcome_ready.wait()
            rest = began + SETTLE_SEC - loop.time()
            if rest > 0 and not self._stopping:
                await asyncio.sleep(rest)
            self._outcome_ready.clear()
            began = loop.time()
            while True:
                held_back = self._holds(self.clock.now())
                if not (self._outcomes or self._released or held_back):
                    break
                batch, self._outcomes = self._outcomes[:FLUSH], self._outcomes[FLUSH:]
                released, self._released = self._released[:FLUSH], self._released[FLUSH:]
                await self._record(batch, released, held_back)
            if self._stopping:
                return

    async def _record(
        self,
        batch: list[Outcome],
        released: list[tuple[Job, Lane]],
        held_back: dict[str, datetime],
    ) -> None:
        now = self.clock.now()
        # A lane's circuit as it is now: open again after a failed probe, or closed.
        heard = self._heard_lately(now)
        given_back = [(job, lane.until(now) if heard else None) for job, lane in released]
        try:
            await self.db.transaction(
                lambda session: record_outcomes(
                    session,
                    batch,
                    released=given_back,
                    held_back=held_back,
                    owner=self.worker_id,
                    now=now,
                )
            )
        except Exception:
            # Unrecorded: the leases lapse and the deliveries are sent again (a duplicate,
            # never a loss).
            log.exception("recording %s webhook outcomes failed", len(batch) + len(released))
            unblocked = False
        else:
            # A settled event of a call lets the call's next one go (SPEC §6 order).
            unblocked = any(
                o.job.call_sid is not None and o.status in ("succeeded", "failed") for o in batch
            )
        for outcome in batch:
            self._inflight_ids.discard(outcome.job.delivery_id)
        for job, _lane in released:
            self._inflight_ids.discard(job.delivery_id)
        if unblocked:
            self._runner.wake()


async def _attempt(
    job: Job,
    *,
    clients: sending.Clients,
    resolver: HostResolver | None,
    allow_private: bool,
    now: datetime,
    keys: SigningKeys | None = None,
) -> sending.AttemptResult:
    """One attempt; one that raises is a failed attempt (so the retry schedule runs on:
    otherwise the lease would lapse and the delivery go out again and again, holding
    back the call's later events)."""
    try:
        keys = keys or job.keys
        assert keys is not None
        return await sending.attempt(
            clients,
            url=job.url,
            body=job.body,
            msg_id=job.event_id,
            secrets=keys.at(now),
            timestamp=int(now.timestamp()),
            allow_private=allow_private,
            now=now,
            resolver=resolver,
        )
    except Exception as exc:
        log.exception("delivery %s: the attempt failed to run", job.delivery_id)
        return sending.AttemptResult(False, None, f"internal error: {exc.__class__.__name__}", 0)


async def deliver(
    job: Job,
    *,
    db: Database,
    clock: Clock,
    box: SecretBox,
    clients: sending.Clients,
    allow_private: bool,
) -> WebhookDelivery:
    """Make one attempt of ``job`` and record its outcome (the CLI's ``webhook test``)."""
    now = clock.now()
    async with db.read() as session:
        keys = await signing_keys(session, job.org_id, box)
    result = await _attempt(
        job, clients=clients, resolver=None, allow_private=allow_private, now=now, keys=keys
    )
    recorded_at = clock.now()
    return await db.transaction(
        lambda session: record_outcome(session, job, result, now=recorded_at)
    )
