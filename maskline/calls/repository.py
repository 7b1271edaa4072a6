"""Reading calls in bulk: call-logs pages and usage statistics (SPEC §3)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Select,
    case,
    func,
    inspect,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.calls import tally
from maskline.calls.models import LIVE_STATUSES, Call
from maskline.kit.daterange import DateRange
from maskline.kit.pagination import Listing, Page, Paged, page_of
from maskline.kit.scope import owned_by, scoped
from maskline.webhooks.outbox import Prior


def _filtered(
    org_id: str, *, dates: DateRange, statuses: list[str] | None = None, party: str | None = None
) -> Select[Any]:
    """One query over the organisation's calls in ``dates`` (stats; the statuses and
    party of the call-logs are ``_branches``)."""
    query = scoped(Call, org_id)
    if dates.start is not None:
        query = query.where(Call.created_at >= dates.start)
    if dates.end is not None:
        query = query.where(Call.created_at < dates.end)
    if statuses:
        query = query.where(Call.status.in_(statuses))
    return query


def _branches(
    org_id: str, *, dates: DateRange, statuses: list[str] | None, party: str | None
) -> list[Select[Any]]:
    """The call-logs filter as queries whose union is the list, each read by an index in
    the list's order (``created_at``, ``id``): one per status, and per side of the call
    for a party (an OR or an IN would read every matching row to sort them)."""
    base = _filtered(org_id, dates=dates)
    sides = [base] if party is None else [base.where(column == party) for column in _SIDES]
    if not statuses:
        return sides
    if party is not None:
        # A party's calls are few: its index, then the statuses among them.
        return [side.where(Call.status.in_(statuses)) for side in sides]
    return [base.where(Call.status == status) for status in sorted(set(statuses))]


_SIDES = (Call.party_a, Call.party_b)
CALLS = Listing(Call, Call.created_at, Call.id, name="call-logs", noun="calls")


def call_logs_filters(
    *, dates: DateRange, statuses: list[str] | None, party: str | None
) -> dict[str, object]:
    """The call-logs filters as a cursor is bound to them."""
    return {
        "start": dates.start,
        "end": dates.end,
        "statuses": sorted(set(statuses)) if statuses else None,
        "party": party,
    }


async def page_of_calls(
    session: AsyncSession,
    org_id: str,
    page: Page,
    *,
    dates: DateRange,
    statuses: list[str] | None,
    party: str | None,
) -> Paged[Call]:
    """A call-logs page, newest first; its total is the kept count when unfiltered."""
    filters = call_logs_filters(dates=dates, statuses=statuses, party=party)
    unfiltered = not any(filters.values())
    return await page_of(
        session,
        CALLS,
        _branches(org_id, dates=dates, statuses=statuses, party=party),
        page,
        filters=filters,
        total=await tally.stored_calls(session, org_id) if unfiltered else None,
    )


@functools.cache
def _call_values() -> tuple[tuple[str, str], ...]:
    """The row's columns, each with the attribute it is read from."""
    return tuple(
        (column.name, attr.key)
        for attr in inspect(Call).column_attrs
        for column in attr.columns
        if column.name != "id"
    )


def new_call(**values: Any) -> SimpleNamespace:
    """A call not yet stored, as plain attributes named as ``Call``'s (every column's,
    None where not given): what ``insert_call`` inserts and ``call_data`` reads.
    A POST's call is never loaded or changed through the ORM: an instrumented ``Call``
    made, read back for its insert and for its answer cost a POST about 50 µs."""
    unknown = values.keys() - _call_attributes()
    if unknown:
        raise TypeError(f"not attributes of Call: {sorted(unknown)}")
    return SimpleNamespace(**{**_call_attributes(), **values})


@functools.cache
def _call_attributes() -> dict[str, None]:
    return dict.fromkeys(key for _name, key in _call_values())


def insert_call(call: SimpleNamespace) -> Prior:
    """A new call's row (``new_call``) to insert with its first event
    (``webhooks/outbox.py``), without the ORM's unit of work."""
    attributes = vars(call)
    if attributes.keys() != _call_attributes().keys():
        # mypy sees a namespace's attributes as Any: a misspelt one is caught here.
        raise TypeError(f"not a new call's attributes: {sorted(attributes)}")
    values = {name: attributes[key] for name, key in _call_values()}
    return Prior(Call.metadata.tables[Call.__tablename__], values)


def pair_number(
    org_id: str | ColumnElement[str], a: str | ColumnElement[str], b: str | ColumnElement[str]
) -> ScalarSelect[str]:
    """The masked number of the pair's latest call (either way round), as a subquery: the
    number pool offers it first, so that a party can call the other back on it.

    One branch a direction, each the latest call of its A party (``ix_calls_org_party_a``)
    that went to the other: a read of that party's calls at most. As one ``OR`` of the two,
    SQLite read the organisation's calls newest first until one matched (every call of it,
    for a new pair): 2.6 ms a POST at 4,500 calls, and growing with every call.
    """

    def latest(caller: str | ColumnElement[str], callee: str | ColumnElement[str]) -> Any:
        return (
            select(Call.masked_number, Call.created_at, Call.id)
            .where(owned_by(Call, org_id), Call.party_a == caller, Call.party_b == callee)
            .order_by(Call.created_at.desc(), Call.id.desc())
            .limit(1)
            .subquery()
        )

    forward, back = latest(a, b), latest(b, a)
    either = union_all(select(forward), select(back)).subquery()
    return (
        select(either.c.masked_number)
        .order_by(either.c.created_at.desc(), either.c.id.desc())
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


async def daily(session: AsyncSession, org_id: str, dates: DateRange) -> list[Day]:
    calls = _filtered(org_id, dates=dates).subquery()
    day = tally.ist_day(session, calls.c.created_at).label("day")
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
