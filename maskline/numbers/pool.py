"""Choosing a masked number for a call (SPEC §2).

A number is free for a call when no live call of either party uses it. That
rule is enforced by the ``number_leases`` primary key (number, party), not by
a read: two racing calls cannot both take it, on SQLite or PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.scope import owned_by_or_shared, unowned
from maskline.kit.upsert import insert_for
from maskline.numbers.models import MaskedNumber, NumberLease

CANDIDATES = 20


def _usable_by(org_id: str) -> ColumnElement[bool]:
    """The organisation's own numbers and the shared pool."""
    return owned_by_or_shared(MaskedNumber, org_id)


async def _still_usable(
    session: AsyncSession, org_id: str, number: ColumnElement[str]
) -> str | None:
    """``number`` if it is still in the pool for this organisation."""
    return (
        await session.execute(
            select(MaskedNumber.number).where(MaskedNumber.number == number, _usable_by(org_id))
        )
    ).scalar_one_or_none()


async def _try_lease(
    session: AsyncSession, number: str, parties: tuple[str, str], sid: str
) -> bool:
    stmt = (
        insert_for(session, NumberLease)
        .values([{"number": number, "party": p, "call_sid": sid} for p in parties])
        .on_conflict_do_nothing()
        .returning(NumberLease.party)
    )
    taken = list((await session.execute(stmt)).scalars())
    if len(taken) == len(parties):
        return True
    if taken:
        await session.execute(
            delete(NumberLease).where(NumberLease.number == number, NumberLease.party.in_(taken))
        )
    return False


async def lease_number(
    session: AsyncSession,
    *,
    org_id: str,
    party_a: str,
    party_b: str,
    call_sid: str,
    previous: ColumnElement[str],
) -> str | None:
    """Lease a masked number to a new call, or None when none is free for both parties.

    ``previous`` is the number the pair had last, for call-backs: a SQL expression the
    calls domain builds (a subquery, so that finding it costs no query of its own).

    The number's ``last_used_at`` is not touched here: that row is shared by every call
    on the number, so the caller touches it (``touch_number``) just before committing.
    """
    parties = (party_a, party_b)
    # The pair's previous number first, wherever it stands in the least-recently-used
    # order (once used, it is the most recently used): the lease says if it is free.
    previous_number = await _still_usable(session, org_id, previous)
    if previous_number is not None and await _try_lease(
        session, previous_number, parties, call_sid
    ):
        return previous_number
    in_use = exists().where(
        NumberLease.number == MaskedNumber.number, NumberLease.party.in_(parties)
    )
    candidates = list(
        (
            await session.execute(
                select(MaskedNumber.number)
                .where(_usable_by(org_id), ~in_use)
                # Least recently used first; the organisation's own numbers before shared ones.
                .order_by(
                    MaskedNumber.last_used_at.is_not(None),
                    MaskedNumber.last_used_at,
                    unowned(MaskedNumber),
                    MaskedNumber.id,
                )
                .limit(CANDIDATES)
            )
        ).scalars()
    )
    for number in candidates:
        if number != previous_number and await _try_lease(session, number, parties, call_sid):
            return number
    return None


async def touch_number(session: AsyncSession, number: str, *, now: datetime) -> None:
    """Mark the number used now (least recently used numbers are offered first)."""
    await session.execute(
        update(MaskedNumber).where(MaskedNumber.number == number).values(last_used_at=now)
    )


async def release_number(session: AsyncSession, call_sid: str) -> None:
    await session.execute(delete(NumberLease).where(NumberLease.call_sid == call_sid))
