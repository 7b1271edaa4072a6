"""Choosing a masked number for a call (SPEC §2).

A number is free for a call when no live call of either party uses it. That
rule is enforced by the ``number_leases`` primary key (number, party), not by
a read: two racing calls cannot both take it, on SQLite or PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, String, case, delete, exists, literal, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.scope import owned_by_or_shared, unowned
from maskline.kit.upsert import insert_for
from maskline.numbers.models import MaskedNumber, NumberLease

CANDIDATES = 20


def _usable_by(org_id: str) -> ColumnElement[bool]:
    """The organisation's own numbers and the shared pool."""
    return owned_by_or_shared(MaskedNumber, org_id)


def _free_for(parties: tuple[str, str]) -> ColumnElement[bool]:
    """No live call of either party uses the number."""
    return ~exists().where(
        NumberLease.number == MaskedNumber.number, NumberLease.party.in_(parties)
    )


# Least recently used first; the organisation's own numbers before shared ones.
_LEAST_RECENTLY_USED = (
    MaskedNumber.last_used_at.is_not(None),
    MaskedNumber.last_used_at,
    unowned(MaskedNumber),
    MaskedNumber.id,
)


async def _lease_best(
    session: AsyncSession,
    *,
    org_id: str,
    parties: tuple[str, str],
    call_sid: str,
    previous: ColumnElement[str],
) -> tuple[str | None, int]:
    """Pick the best free number and lease it to both parties, in one statement: the
    number and how many of the two leases were taken (2, unless a concurrent call took
    one of them first)."""
    best = (
        select(MaskedNumber.number)
        .where(_usable_by(org_id), _free_for(parties))
        # The pair's previous number first, wherever it stands in the least-recently-used
        # order (once used, it is the most recently used).
        .order_by(case((MaskedNumber.number == previous, 0), else_=1), *_LEAST_RECENTLY_USED)
        .limit(1)
        .subquery()
    )
    party = select(literal(parties[0], String).label("party")).union_all(
        select(literal(parties[1], String))
    )
    both = party.subquery()
    rows = (
        select(best.c.number, both.c.party, literal(call_sid, String))
        .select_from(best.join(both, true()))
        # SQLite reads ``ON CONFLICT`` after a join's ``ON`` only past a WHERE.
        .where(true())
    )
    taken = list(
        (
            await session.execute(
                insert_for(session, NumberLease)
                .from_select(["number", "party", "call_sid"], rows)
                .on_conflict_do_nothing()
                .returning(NumberLease.number)
            )
        ).scalars()
    )
    return (taken[0] if taken else None), len(taken)


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

    One statement picks and leases the number. Only when a concurrent call (another
    transaction, on PostgreSQL) leased it to one of the parties first does a second
    pass try the next candidates one by one. The number's own row is not written here
    (``release_number`` dates its use): it is shared by every call on the number.
    """
    parties = (party_a, party_b)
    number, taken = await _lease_best(
        session, org_id=org_id, parties=parties, call_sid=call_sid, previous=previous
    )
    if number is None or taken == len(parties):
        return number
    await session.execute(delete(NumberLease).where(NumberLease.call_sid == call_sid))
    candidates = list(
        (
            await session.execute(
                select(MaskedNumber.number)
                .where(_usable_by(org_id), _free_for(parties))
                .order_by(*_LEAST_RECENTLY_USED)
                .limit(CANDIDATES)
            )
        ).scalars()
    )
    for candidate in candidates:
        if await _try_lease(session, candidate, parties, call_sid):
            return candidate
    return None


async def release_number(session: AsyncSession, call_sid: str, *, now: datetime) -> None:
    """Free the call's number and date its use (least recently used numbers are offered
    first): once, at the end of the call, rather than on the path of every new call."""
    released = (
        await session.execute(
            delete(NumberLease)
            .where(NumberLease.call_sid == call_sid)
            .returning(NumberLease.number)
        )
    ).scalars()
    numbers = set(released)
    if numbers:
        await session.execute(
            update(MaskedNumber).where(MaskedNumber.number.in_(numbers)).values(last_used_at=now)
        )
