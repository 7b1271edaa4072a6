"""Choosing a masked number for a call (SPEC §2).

A number is free for a call when no live call of either party uses it. That
rule is enforced by the ``number_leases`` primary key (number, party), not by
a read: two racing calls cannot both take it, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal_column,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.kit.scope import owned_by_or_shared, unowned
from maskline.kit.upsert import insert_for
from maskline.kit.writer import NUMBER_STAGE, defer_to_batch
from maskline.numbers.models import MaskedNumber, NumberLease

CANDIDATES = 20


def _usable_by(org_id: Any) -> ColumnElement[bool]:
    """The organisation's own numbers and the shared pool."""
    return owned_by_or_shared(MaskedNumber, org_id)


def _free_for(parties: tuple[Any, Any]) -> ColumnElement[bool]:
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


def lease_statement(dialect: str, previous: ColumnElement[str]) -> Any:
    """The statement that picks the best free number and leases it to both parties:
    built once per process by its caller (``previous``, the pair's last number, is the
    calls domain's subquery), run by ``lease_number`` (its parameters are ``lease_*``).
    It returns the number once per lease taken: twice, unless a concurrent call took
    one of them first."""
    parties = (
        bindparam("lease_party_a", type_=String()),
        bindparam("lease_party_b", type_=String()),
    )
    best = (
        select(MaskedNumber.number)
        .where(_usable_by(bindparam("lease_org_id", type_=String())), _free_for(parties))
        # The pair's previous number first, wherever it stands in the least-recently-used
        # order (once used, it is the most recently used).
        .order_by(case((MaskedNumber.number == previous, 0), else_=1), *_LEAST_RECENTLY_USED)
        .limit(1)
        .subquery()
    )
    party = select(parties[0].label("party")).union_all(select(parties[1]))
    both = party.subquery()
    rows = (
        select(best.c.number, both.c.party, bindparam("lease_call_sid", type_=String()))
        .select_from(best.join(both, true()))
        # SQLite reads ``ON CONFLICT`` after a join's ``ON`` only past a WHERE.
        .where(true())
    )
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # The table, not the mapped class: an ORM insert would read its parameters as rows.
    leases = NumberLease.metadata.tables[NumberLease.__tablename__]
    return (
        insert(leases)
        .from_select(["number", "party", "call_sid"], rows)
        .on_conflict_do_nothing()
        .returning(leases.c.number)
    )


# A new call's pick as one of many (``lease_many_statement``): its organisation and
# parties, as columns of the statement's list of asks.
PreviousOf = Callable[
    [ColumnElement[str], ColumnElement[str], ColumnElement[str]], ColumnElement[str]
]


def lease_many_statement(previous_of: PreviousOf) -> Any:
    """PostgreSQL: ``lease_statement`` for many new calls in one statement (one round
    trip a batch instead of one a call). Its parameters are arrays, an element an ask
    (``lease_org_ids``, ``lease_parties_a``, ``lease_parties_b``, ``lease_call_sids``);
    ``previous_of`` makes the pair's last number from an ask's organisation and parties.
    Every ask's pick reads the leases as they were before the statement: two asks of a
    batch sharing a party may pick the same number, and the second's lease of that party
    is then not taken. It returns (number, call_sid) once per lease taken."""

    def arrays(name: str) -> Any:
        return bindparam(name, type_=postgresql.ARRAY(String()))

    asks = (
        func.unnest(
            arrays("lease_org_ids"),
            arrays("lease_parties_a"),
            arrays("lease_parties_b"),
            arrays("lease_call_sids"),
        )
        .table_valued("org_id", "party_a", "party_b", "call_sid")
        .render_derived(name="asks")
    )
    # Named, not the columns above: SQLAlchemy correlates a subquery to its immediate
    # enclosing query only, and these are read two and three levels down.
    org, a, b = (literal_column(f"asks.{name}", String()) for name in asks.c.keys()[:3])
    best = (
        select(MaskedNumber.number)
        .where(_usable_by(org), _free_for((a, b)))
        .order_by(case((MaskedNumber.number == previous_of(org, a, b), 0), else_=1),
                  *_LEAST_RECENTLY_USED)
        .limit(1)
        .lateral("best")
    )  # fmt: skip
    party = (
        func.unnest(postgresql.array([asks.c.party_a, asks.c.party_b]))
        .table_valued("party")
        .render_derived(name="parties")
    )
    rows = select(best.c.number, party.c.party, asks.c.call_sid).select_from(
        asks.join(best, true()).join(party, true())
    )
    leases = NumberLease.metadata.tables[NumberLease.__tablename__]
    return (
        postgresql.insert(leases)
        .from_select(["number", "party", "call_sid"], rows)
        .on_conflict_do_nothing()
        .returning(leases.c.number, leases.c.call_sid)
    )


@dataclass(frozen=True, slots=True)
class LeaseAsk:
    """A new call's pick in a batch (``lease_numbers``)."""

    org_id: str
    party_a: str
    party_b: str
    call_sid: str


async def lease_numbers(
    conn: AsyncConnection, asks: Sequence[LeaseAsk], *, one: Any, many: Any
) -> list[str | None]:
    """Lease a number to each new call of a batch: its number, or None where not both of
    its leases were taken (what it took is given back; that call leases on its own, with
    ``lease_number``'s second pass, or finds that no number is free).

    On PostgreSQL one statement for all (``many``, ``lease_many_statement``'s); on
    SQLite, in process, ``one`` (``lease_statement``'s) per call, in order, each seeing
    the ones before."""
    taken: dict[str, list[str]] = {ask.call_sid: [] for ask in asks}
    if conn.dialect.name == "postgresql":
        rows = await conn.execute(
            many,
            {
                "lease_org_ids": [ask.org_id for ask in asks],
                "lease_parties_a": [ask.party_a for ask in asks],
                "lease_parties_b": [ask.party_b for ask in asks],
                "lease_call_sids": [ask.call_sid for ask in asks],
            },
        )
        for number, call_sid in rows:
            taken[call_sid].append(number)
    else:
        for ask in asks:
            params = {
                "lease_org_id": ask.org_id,
                "lease_party_a": ask.party_a,
                "lease_party_b": ask.party_b,
                "lease_call_sid": ask.call_sid,
            }
            taken[ask.call_sid] = list((await conn.execute(one, params)).scalars())
    short = [sid for sid, numbers in taken.items() if len(numbers) not in (0, 2)]
    if short:
        leases = NumberLease.metadata.tables[NumberLease.__tablename__]
        await conn.execute(delete(leases).where(leases.c.call_sid.in_(short)))
    return [
        numbers[0] if len(numbers) == 2 else None
        for numbers in (taken[ask.call_sid] for ask in asks)
    ]


# The leases' statistics are refreshed when their count has changed by half, and by at
# least this many, since the last refresh.
STATISTICS_CHANGE = 100


async def refresh_lease_statistics(session: AsyncSession, counted: int) -> int:
    """PostgreSQL: ``ANALYZE`` the leases when their number has changed much since it was
    ``counted`` (at the last refresh), so that the planner knows how many live calls hold
    numbers now; the number now. Nothing to do on SQLite, whose planner keeps no counts.

    The table holds live calls only: empty at night, thousands of rows in a burst. A
    plan made while it was nearly empty (PostgreSQL keeps a prepared statement's
    generic plan until the table's statistics change) reads the whole table for every
    new call's lease: 5–9 ms a POST at 100 calls a second, in the minute before
    autovacuum came round. The engine calls this every few seconds.
    """
    if session.get_bind().dialect.name != "postgresql":
        return counted
    leases = (await session.execute(select(func.count()).select_from(NumberLease))).scalar_one()
    if abs(leases - counted) >= max(STATISTICS_CHANGE, counted // 2):
        await session.execute(text(f"ANALYZE {NumberLease.__tablename__}"))
        return int(leases)
    return counted


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
    statement: Any,
    *,
    org_id: str,
    party_a: str,
    party_b: str,
    call_sid: str,
) -> str | None:
    """Lease a masked number to a new call, or None when none is free for both parties.

    ``statement`` is ``lease_statement``'s (built once): one statement picks and leases
    the number. Only when a concurrent call (another transaction, on PostgreSQL) leased
    it to one of the parties first does a second pass try the next candidates one by
    one. The number's own row is not written here (``release_number`` dates its use):
    it is shared by every call on the number.
    """
    parties = (party_a, party_b)
    params = {
        "lease_org_id": org_id,
        "lease_party_a": party_a,
        "lease_party_b": party_b,
        "lease_call_sid": call_sid,
    }
    taken = list((await session.execute(statement, params)).scalars())
    if not taken or len(taken) == len(parties):
        return taken[0] if taken else None
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


@dataclass(frozen=True, slots=True)
class Release:
    """An ended call's number to free (its leases) and date (its last use)."""

    call_sid: str
    number: str
    now: datetime


@functools.cache
def _release_statements() -> tuple[Any, Any]:
    leases = NumberLease.metadata.tables[NumberLease.__tablename__]
    numbers = MaskedNumber.metadata.tables[MaskedNumber.__tablename__]
    free = delete(leases).where(leases.c.call_sid == bindparam("rel_sid", type_=String()))
    dated = (
        update(numbers)
        .where(numbers.c.number == bindparam("rel_number", type_=String()))
        .values(last_used_at=bindparam("rel_now", type_=numbers.c.last_used_at.type))
    )
    return free, dated


async def release_numbers(conn: AsyncConnection, releases: Sequence[Any]) -> list[None]:
    """Free the ended calls' numbers and date their use (least recently used numbers are
    offered first): once, at the end of a call, rather than on the path of every new
    call. In a batch, for all its ended calls at once, just before its commit: a row a
    number's calls share is written once a batch, and locked for the commit alone."""
    asks: Sequence[Release] = releases
    free, dated = _release_statements()
    await conn.execute(free, [{"rel_sid": release.call_sid} for release in asks])
    latest: dict[str, datetime] = {}
    for release in asks:
        latest[release.number] = max(release.now, latest.get(release.number, release.now))
    # In the numbers' order: two batches dating the same numbers never wait on each other
    # in a cycle.
    await conn.execute(dated, [{"rel_number": n, "rel_now": latest[n]} for n in sorted(latest)])
    return [None] * len(asks)


async def release_number(
    session: AsyncSession, call_sid: str, number: str, *, now: datetime
) -> None:
    """Free the call's number (``release_numbers``): in a batch, with every other ended
    call's, just before its commit; otherwise here and now."""
    release = Release(call_sid, number, now)
    if not defer_to_batch(session, release_numbers, release, stage=NUMBER_STAGE):
        await release_numbers(await session.connection(), [release])
