"""``Idempotency-Key`` (SPEC §3): one stored 201 per key and organisation, for 24 hours.

The key's row is inserted first, in the transaction that creates the call. A
request racing another with the same key waits on that row (PostgreSQL's
unique index, SQLite's single writer) and then finds the first response.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.calls.models import IdempotencyKey
from maskline.errors import IdempotencyConflict
from maskline.kit.upsert import insert_for

KEPT_FOR = timedelta(hours=24)
PLACEHOLDER_STATUS = 0


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: str


async def claim_key(
    session: AsyncSession, org_id: str, key: str, fingerprint: str, *, now: datetime
) -> StoredResponse | None:
    """Take ``key`` for this request (None), or return the response stored for it."""
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.org_id == org_id,
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
    if inserted is not None:
        return None
    row = (
        await session.execute(
            select(IdempotencyKey).where(IdempotencyKey.org_id == org_id, IdempotencyKey.key == key)
        )
    ).scalar_one()
    if row.request_hash != fingerprint:
        raise IdempotencyConflict()
    if row.status_code == PLACEHOLDER_STATUS:
        raise IdempotencyConflict("A request with this Idempotency-Key is still in progress.")
    return StoredResponse(row.status_code, row.response_body)


async def store_response(
    session: AsyncSession, org_id: str, key: str, response: StoredResponse
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.org_id == org_id, IdempotencyKey.key == key)
        .values(status_code=response.status_code, response_body=response.body)
    )


async def purge_expired(session: AsyncSession, *, now: datetime) -> None:
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - KEPT_FOR))
