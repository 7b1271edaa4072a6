"""``Idempotency-Key`` (SPEC §3): one stored 201 per key and organisation, for 24 hours.

The key's row is inserted first, in the transaction that creates the call. A
request racing another with the same key waits for it, up to
``MASKLINE_IDEMPOTENCY_WAIT_SEC`` (10 s), then finds the first response (or,
if the first failed, takes the key itself); past the wait it is 409 "still in
progress". In one process the wait is on ``InFlight``, before the racing
request asks for a database write at all; across API processes it is
PostgreSQL's wait on the first's uncommitted row, bounded by ``lock_timeout``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.calls.models import IdempotencyKey
from maskline.errors import IdempotencyConflict
from maskline.kit.scope import owned_by, scoped
from maskline.kit.upsert import insert_for

KEPT_FOR = timedelta(hours=24)
PLACEHOLDER_STATUS = 0
IN_PROGRESS = "A request with this Idempotency-Key is still in progress."
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired


class InFlight:
    """The keys this process's requests are placing calls under right now."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, str], asyncio.Event] = {}
        self._waiting: Counter[tuple[str, str]] = Counter()

    def running(self, org_id: str, key: str) -> bool:
        return (org_id, key) in self._running

    def waiting(self, org_id: str, key: str) -> int:
        return self._waiting[(org_id, key)]

    @asynccontextmanager
    async def turn(self, org_id: str, key: str | None, *, wait_sec: float) -> AsyncIterator[None]:
        """Hold ``key`` for the block, after waiting (up to ``wait_sec``) for the request
        of this process that holds it; 409 if it is still running then."""
        if key is None:
            yield
            return
        slot = (org_id, key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_sec
        while (other := self._running.get(slot)) is not None:
            self._waiting[slot] += 1
            try:
                await asyncio.wait_for(other.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise IdempotencyConflict(IN_PROGRESS) from None
            finally:
                self._waiting[slot] -= 1
                if not self._waiting[slot]:
                    del self._waiting[slot]
        done = asyncio.Event()
        self._running[slot] = done
        try:
            yield
        finally:
            del self._running[slot]
            done.set()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: str


async def claim_key(
    session: AsyncSession,
    org_id: str,
    key: str,
    fingerprint: str,
    *,
    now: datetime,
    wait_sec: float,
) -> StoredResponse | None:
    """Take ``key`` for this request (None), or return the response stored for it.

    Another process's request holding the key is waited for up to ``wait_sec``.
    """
    bounded = session.get_bind().dialect.name == "postgresql"
    if bounded:
        await session.execute(
            text("SELECT set_config('lock_timeout', :ms, true)"),
            {"ms": f"{max(1, round(wait_sec * 1000))}ms"},
        )
    try:
        await session.execute(
            delete(IdempotencyKey).where(
                owned_by(IdempotencyKey, org_id),
                IdempotencyKey.key == key,
                IdempotencyKey.created_at < now - KEPT_FOR,
            )
        )
        inserted = (
            await session.execute(
                insert_for(session, IdempotencyKey)
                .values(
                    org_id=org_id,
                    key=key,
                    request_hash=fingerprint,
                    status_code=PLACEHOLDER_STATUS,
                    response_body="",
                    created_at=now,
                )
                .on_conflict_do_nothing()
                .returning(IdempotencyKey.key)
            )
        ).scalar_one_or_none()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise IdempotencyConflict(IN_PROGRESS) from None
        raise
    if bounded:
        # The rest of the transaction (the wallet's row) waits as configured.
        await session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
    if inserted is not None:
        return None
    row = (
        await session.execute(scoped(IdempotencyKey, org_id).where(IdempotencyKey.key == key))
    ).scalar_one()
    if row.request_hash != fingerprint:
        raise IdempotencyConflict()
    if row.status_code == PLACEHOLDER_STATUS:
        raise IdempotencyConflict(IN_PROGRESS)
    return StoredResponse(row.status_code, row.response_body)


async def store_response(
    session: AsyncSession | AsyncConnection, org_id: str, key: str, response: StoredResponse
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(owned_by(IdempotencyKey, org_id), IdempotencyKey.key == key)
        .values(status_code=response.status_code, response_body=response.body)
    )


async def purge_expired(session: AsyncSession, *, now: datetime) -> None:
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - KEPT_FOR))
