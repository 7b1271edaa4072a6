"""Reading calls in bulk: call-logs pages and usage statistics (SPEC §3)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    case,
    func,
    insert,
    inspect,
    or_,
    select,
    union,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from maskline.calls.models import LIVE_STATUSES, Call
from maskline.kit.daterange import DateRange
from maskline.kit.pagination import Page
from maskline.kit.scope import owned_by, scoped
from maskline.webhooks.outbox import Prior


def _filtered(
    org_id: str, *, dates: DateRange, statuses: list[str] | None = None, party: str | None = None
) -> Select[Any]:
    query = scoped(Call, org_id)
    if dates.start is not None:
        query = query.where(Call.created_at >= dates.start)
    if dates.end is not None:
        query = query.where(Call.created_at < dates.end)
    if statuses:
        query = query.where(Call.status.in_(statuses))
    if party is not None:
        # A union of two index lookups: an OR across the two columns would scan every call.
        either = union(
            select(Call.id).where(owned_by(Call, org_id), Call.party_a == party),
            select(Call.id).where(owned_by(Call, org_id), Call.party_b == party),
        )
        query = query.where(Call.id.in_(select(either.subquery().c.id)))
    return query


async def page_of_calls(
    session: AsyncSession,
    org_id: str,
    page: Page,
    *,
    dates: DateRange,
    statuses: list[str] | None,
    party: str | None,
) -> tuple[list[Call], int]:
    query = _filtered(org_id, dates=dates, statuses=statuses, party=party)
    total = (
        await session.execute(select(func.count()).select_from(query.order_by(None).subquery()))
    ).scalar_one()
    rows = await session.execute(
        query.order_by(Call.created_at.desc(), Call.id.desc())
        .offset(page.offset)
        .limit(page.per_page)
    )
    return list(rows.scalars()), total


@functools.cache
def _call_insert() -> Insert:
    table = Call.metadata.tables[Call.__tablename__]
    return insert(table).values(
        {
            column.name: bindparam(f"c_{column.name}", type_=column.type)
            for column in table.columns
            if column.name != "id"
        }
    )


def insert_call(call: Call) -> Prior:
    """A new call's row as one Core insert, built once per process (no unit-of-work
    flush, no statement to build on the hot path)."""
    values = {
        f"c_{column.name}": getattr(call, attr.key)
        for attr in inspect(Call).column_attrs
        for column in attr.columns
        if column.name != "id"
    }
    return Prior(_call_insert(), values)


def pair_number(
    org_id: str | ColumnElement[str], a: str | ColumnElement[str], b: str | ColumnElement[str]
) -> ScalarSelect[str]:
    """The masked number of the pair's latest call (either way round), as a subquery: the
    number pool offers it first, so that a party can call the other back on it."""
    pair = or_(
        and_(Call.party_a == a, Call.party_b == b), and_(Call.party_a == b, Call.party_b == a)
    )
    return (
        select(Call.masked_number)
        .where(owned_by(Call, org_id), pair)
        .order_by(Call.created_at.desc(), Call.id.desc())
        .limit(1)
        .scalar_subquery()
    )


@dataclass(frozen=True, slots=True)
class Totals:
    calls: int
    live: int
    pairs: int
    talk_sec: int
    bridged_talk_sec: int
    price_paise: int
    answered: int
    bridged: int
    completed: int
    failed: int
    no_answer: int
    billed_sec: int


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    calls: int
    completed: int
    billed_sec: int
    price_paise: int


def _count_where(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def totals(session: AsyncSession, org_id: str, dates: DateRange) -> Totals:
    calls = _filtered(org_id, dates=dates).subquery()
    row = (
        await session.execute(
            select(
                func.count(),
                _count_where(calls.c.status.in_(LIVE_STATUSES)),
                func.count(func.distinct(calls.c.party_a + "-" + calls.c.party_b)),
                func.coalesce(func.sum(calls.c.talk_sec), 0),
                func.coalesce(
                    func.sum(case((calls.c.bridged_at.is_not(None), calls.c.talk_sec))), 0
                ),
                func.coalesce(func.sum(calls.c.price_paise), 0),
                _count_where(calls.c.answered_at.is_not(None)),
                _count_where(calls.c.bridged_at.is_not(None)),
                _count_where(calls.c.status == "completed"),
                _count_where(calls.c.status == "failed"),
                _count_where(calls.c.status == "no-answer"),
                func.coalesce(func.sum(calls.c.billed_pulses * calls.c.pulse_sec), 0),
            )
        )
    ).one()
    return Totals(*(int(value) for value in row))


def _ist_day(session: AsyncSession, column: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("Asia/Kolkata", column))
    return func.date(column, "+330 minutes")  # SQLite stores naive UTC


async def daily(session: AsyncSession, org_id: str, dates: DateRange) -> list[Day]:
    calls = _filtered(org_id, dates=dates).subquery()
    day = _ist_day(session, calls.c.created_at).label("day")
    rows = await session.execute(
        select(
            day,
            func.count(),
            _count_where(calls.c.status == "completed"),
            func.coalesce(func.sum(calls.c.billed_pulses * calls.c.pulse_sec), 0),
            func.coalesce(func.sum(calls.c.price_paise), 0),
        )
        .group_by(day)
        .order_by(day)
    )
    return [
        Day(
            day=value if isinstance(value, date) else date.fromisoformat(str(value)),
            calls=int(count),
            completed=int(completed),
            billed_sec=int(billed),
            price_paise=int(price),
        )
        for value, count, completed, billed, price in rows
    ]


async def pairs(session: AsyncSession, org_id: str, dates: DateRange) -> list[tuple[str, str]]:
    """The distinct (A, B) pairs of the calls in the range."""
    calls = _filtered(org_id, dates=dates).subquery()
    rows = await session.execute(select(calls.c.party_a, calls.c.party_b).distinct())
    return [(a, b) for a, b in rows]
