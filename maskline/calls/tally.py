"""Counts kept as calls are placed and end, so that call-logs and stats read a few rows
instead of counting a million (SPEC §3).

- ``call_counts``: an organisation's stored calls (the unfiltered call-logs total),
  counted in the batch that inserts the calls;
- ``call_pairs`` and ``call_day_pairs_since``: the distinct A–B pairs per range of
  days (``total_mappings``), kept in the same batch;
- ``call_day_tallies``: the figures of ended calls per Asia/Kolkata day of creation,
  added in the batch that ends them.

Each is written once per batch (``kit/writer.py``'s batch steps), rows in sorted
order, so that concurrent batches lock them in one order. The two that every new call of
an organisation would write (its count, and its first calls of the day) are kept in
``SHARDS`` rows each, summed when read: a batch adds to one shard drawn at random, so
that batches committing side by side (PostgreSQL's writers, in every API process)
seldom wait for each other's commit on them.
"""

from __future__ import annotations

import functools
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    SmallInteger,
    String,
    bindparam,
    case,
    func,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.calls.models import (
    LIVE_STATUSES,
    Call,
    CallCount,
    CallDayPairs,
    CallDayTally,
    CallPair,
)
from maskline.kit.daterange import DateRange
from maskline.kit.india import ist_date
from maskline.kit.scope import owned_by
from maskline.kit.writer import defer_to_batch

# Rows per organisation (and day) of the counts every new call adds to. With a few
# writers per process and a few processes, 16 makes two concurrent batches drawing the
# same shard rare; a reader sums at most 16 rows.
SHARDS = 16
# The keyed digest that names a pair (``KeyedDigest``).
PAIR_DIGEST_PURPOSE = "maskline/stats-pairs/v1"
# ``since`` of a pair's first call.
NEVER = date(1, 1, 1)
# The figures a day keeps for its ended calls: each is a sum over them (``_figures``).
FIGURES = (
    "calls",
    "answered",
    "bridged",
    "completed",
    "failed",
    "no_answer",
    "talk_sec",
    "bridged_talk_sec",
    "billed_sec",
    "price_paise",
)


def pair_text(party_a: str, party_b: str) -> str:
    """An A–B pair as the stats count it (``total_mappings``: A then B, as placed)."""
    return f"{party_a}-{party_b}"


def _insert(dialect: str, model: Any) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


# The upserts below are built once per dialect and run with the batch's rows as an
# executemany: building a multi-row statement for each batch (and its cache key) cost
# more CPU than running it.


def _adding(dialect: str, model: Any, keys: Sequence[str], figures: Sequence[str]) -> Any:
    """An upsert of ``model`` on ``keys`` that adds a new row's ``figures`` to the row
    already there."""
    insert = _insert(dialect, model)
    return insert.on_conflict_do_update(
        index_elements=[getattr(model, key) for key in keys],
        set_={name: getattr(model, name) + getattr(insert.excluded, name) for name in figures},
    )


@functools.cache
def _add_calls(dialect: str) -> Any:
    return _adding(dialect, CallCount, ("org_id", "shard"), ("calls",))


@functools.cache
def _move_pairs(dialect: str) -> Any:
    insert = _insert(dialect, CallPair)
    # A new pair is inserted; a pair called on a later day moves on (and its last day
    # becomes its previous one); a pair already called that day is left alone.
    return insert.on_conflict_do_update(
        index_elements=[CallPair.org_id, CallPair.pair],
        set_={"prev_day": CallPair.last_day, "last_day": insert.excluded.last_day},
        where=insert.excluded.last_day > CallPair.last_day,
    ).returning(CallPair.org_id, CallPair.last_day, CallPair.prev_day)


@functools.cache
def _add_firsts(dialect: str) -> Any:
    return _adding(dialect, CallDayPairs, ("org_id", "day", "since", "shard"), ("pairs",))


@functools.cache
def _add_days(dialect: str) -> Any:
    return _adding(dialect, CallDayTally, ("org_id", "day"), FIGURES)


@dataclass(frozen=True, slots=True)
class NewCall:
    """A new call as the tally counts it: its organisation, its IST day of creation and
    its pair's keyed digest."""

    org_id: str
    day: date
    pair: str


async def count_new_call(session: AsyncSession, new: NewCall) -> None:
    """Count a call being inserted in this transaction (in its batch's step, when it
    has one)."""
    if not defer_to_batch(session, count_new_calls, new):
        await count_new_calls(await session.connection(), [new])


async def count_new_calls(conn: AsyncConnection, asks: Sequence[NewCall]) -> list[None]:
    """The batch's new calls: their organisations' counts, then their pairs, on one
    shard drawn for the batch. Refuses nothing."""
    shard = random.randrange(SHARDS)
    per_org = Counter(ask.org_id for ask in asks)
    pair_days = {(ask.org_id, ask.pair, ask.day) for ask in asks}
    if conn.dialect.name == "postgresql" and len({(o, p) for o, p, _ in pair_days}) == len(
        pair_days
    ):
        # The common batch (no pair on two days of it): all three in one round trip.
        orgs = sorted(per_org)
        pairs = sorted(pair_days)
        await conn.execute(
            _count_at_once(),
            {
                "t_orgs": orgs,
                "t_calls": [per_org[org] for org in orgs],
                "t_pair_orgs": [org for org, _, _ in pairs],
                "t_pairs": [pair for _, pair, _ in pairs],
                "t_days": [day for _, _, day in pairs],
                "t_shard": shard,
            },
        )
        return [None] * len(asks)
    # In the order the statement above takes its rows (PostgreSQL runs a data-modifying
    # CTE that nothing reads after the main statement): the pairs, their first calls,
    # then the counts. Two batches taking the same rows in two orders could deadlock.
    await _count_pairs(conn, pair_days, shard=shard)
    await add_calls(conn, per_org, shard=shard)
    return [None] * len(asks)


@functools.cache
def _count_at_once() -> Any:
    """PostgreSQL: ``add_calls``, one round of ``_count_pairs`` and its ``add_firsts``
    as one statement (the first two are data-modifying CTEs of the third), over arrays
    of the batch's rows in sorted order (``t_*``)."""

    def arrays(name: str, item: Any) -> Any:
        return bindparam(name, type_=postgresql.ARRAY(item))

    shard = bindparam("t_shard", type_=SmallInteger())
    counts = (
        func.unnest(arrays("t_orgs", String()), arrays("t_calls", BigInteger()))
        .table_valued("org_id", "calls")
        .render_derived(name="counts")
    )
    counted = (
        _add_calls("postgresql")
        .from_select(["org_id", "shard", "calls"], select(counts.c.org_id, shard, counts.c.calls))
        .cte("counted")
    )
    called = (
        func.unnest(
            arrays("t_pair_orgs", String()), arrays("t_pairs", String()), arrays("t_days", Date())
        )
        .table_valued("org_id", "pair", "day")
        .render_derived(name="called")
    )
    moved_insert = postgresql.insert(CallPair)
    moved = (
        moved_insert.from_select(
            ["org_id", "pair", "last_day"], select(called.c.org_id, called.c.pair, called.c.day)
        )
        .on_conflict_do_update(
            index_elements=[CallPair.org_id, CallPair.pair],
            set_={"prev_day": CallPair.last_day, "last_day": moved_insert.excluded.last_day},
            where=moved_insert.excluded.last_day > CallPair.last_day,
        )
        .returning(CallPair.org_id, CallPair.last_day, CallPair.prev_day)
        .cte("moved")
    )
    since = func.coalesce(moved.c.prev_day, literal(NEVER, Date())).label("since")
    firsts = (
        select(moved.c.org_id, moved.c.last_day, since, shard, func.count())
        .group_by(moved.c.org_id, moved.c.last_day, since)
        .order_by(moved.c.org_id, moved.c.last_day, since)
    )
    return (
        _add_firsts("postgresql")
        .from_select(["org_id", "day", "since", "shard", "pairs"], firsts)
        .add_cte(counted)
    )


async def add_calls(conn: AsyncConnection, per_org: Mapping[str, int], *, shard: int = 0) -> None:
    """``per_org[org]`` more (or, negative, fewer) calls stored for each organisation,
    added to ``shard``."""
    await conn.execute(
        _add_calls(conn.dialect.name),
        [
            {"org_id": org, "shard": shard, "calls": n, "pairs_from": None}
            for org, n in sorted(per_org.items())
        ],
    )


async def _count_pairs(
    conn: AsyncConnection, pair_days: Iterable[tuple[str, str, date]], *, shard: int
) -> None:
    # A pair called on two days of one batch (around midnight) moves on in two rounds,
    # the earlier day first: one statement may change a row once.
    rounds: list[list[tuple[str, str, date]]] = []
    placed: dict[tuple[str, str], int] = {}
    for org, pair, day in sorted(pair_days, key=lambda t: (t[2], t[0], t[1])):
        index = placed.get((org, pair), -1) + 1
        placed[(org, pair)] = index
        if index == len(rounds):
            rounds.append([])
        rounds[index].append((org, pair, day))
    firsts: Counter[tuple[str, date, date]] = Counter()
    for each in rounds:
        moved = await conn.execute(
            _move_pairs(conn.dialect.name),
            [
                {"org_id": org, "pair": pair, "last_day": day, "prev_day": None}
                for org, pair, day in sorted(each)
            ],
        )
        for org, day, prev in moved:
            firsts[(org, _as_date(day), _as_date(prev) if prev is not None else NEVER)] += 1
    await add_firsts(conn, firsts, shard=shard)


async def add_firsts(
    conn: AsyncConnection, firsts: Mapping[tuple[str, date, date], int], *, shard: int = 0
) -> None:
    """``firsts[(org, day, since)]`` more pairs called on ``day`` after ``since``, added
    to ``shard``."""
    if not firsts:
        return
    await conn.execute(
        _add_firsts(conn.dialect.name),
        [
            {"org_id": org, "day": day, "since": since, "shard": shard, "pairs": n}
            for (org, day, since), n in sorted(firsts.items())
        ],
    )


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class EndedCall:
    """An ended call's figures, for the day it was created on."""

    org_id: str
    day: date
    figures: tuple[int, ...]


def figures(
    *,
    status: str,
    answered: bool,
    bridged: bool,
    talk_sec: int,
    billed_sec: int,
    price_paise: int,
) -> tuple[int, ...]:
    """An ended call's contribution to each of ``FIGURES``."""
    return (
        1,
        int(answered),
        int(bridged),
        int(status == "completed"),
        int(status == "failed"),
        int(status == "no-answer"),
        talk_sec,
        talk_sec if bridged else 0,
        billed_sec,
        price_paise,
    )


def ended(call: Call) -> EndedCall:
    return EndedCall(
        call.org_id,
        ist_date(call.created_at),
        figures(
            status=call.status,
            answered=call.answered_at is not None,
            bridged=call.bridged_at is not None,
            talk_sec=call.talk_sec,
            billed_sec=call.billed_pulses * call.pulse_sec,
            price_paise=call.price_paise,
        ),
    )


async def count_ended_call(session: AsyncSession, call: Call) -> None:
    """Add an ending call's figures to its day (its row must hold its final figures)."""
    ask = ended(call)
    if not defer_to_batch(session, count_ended_calls, ask):
        await count_ended_calls(await session.connection(), [ask])


async def count_ended_calls(conn: AsyncConnection, asks: Sequence[EndedCall]) -> list[None]:
    """The batch's ended calls, added to their days: one statement. Refuses nothing."""
    days: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0] * len(FIGURES))
    for ask in asks:
        sums = days[(ask.org_id, ask.day)]
        for index, value in enumerate(ask.figures):
            sums[index] += value
    await conn.execute(
        _add_days(conn.dialect.name),
        [
            {"org_id": org, "day": day, **dict(zip(FIGURES, sums, strict=True))}
            for (org, day), sums in sorted(days.items())
        ],
    )
    return [None] * len(asks)


async def uncount_calls(session: AsyncSession, org_ids: Iterable[str]) -> None:
    """Calls deleted (retention): one fewer stored per occurrence of its organisation."""
    counted = Counter(org_ids)
    if counted:
        await add_calls(await session.connection(), {org: -n for org, n in counted.items()})


async def stored_calls(session: AsyncSession, org_id: str) -> int:
    """The organisation's stored calls, as counted."""
    found = await session.scalar(
        select(func.sum(CallCount.calls)).where(owned_by(CallCount, org_id))
    )
    return int(found or 0)


@dataclass
class Tallied:
    """What the tallies hold for whole days ``first``…``last``: figures (``FIGURES``)
    per day, ended and live calls together; live figures; the distinct pairs (None when
    some of those days were not tallied for pairs)."""

    days: dict[date, dict[str, int]]
    live: int
    pairs: int | None


async def tallied(
    session: AsyncSession, org_id: str, first: date, last: date, dates: DateRange
) -> Tallied:
    """The figures of the calls created on IST days ``first``…``last`` (``dates``, the
    same days as instants), read in one statement (one snapshot): the ended calls'
    tallies, the live calls themselves (at most the organisation's live-call cap), and
    the distinct pairs."""
    zero: Any = literal_column("0")
    tally = CallDayTally
    ended_rows = select(
        literal_column("'day'"),
        tally.day,
        *(getattr(tally, name) for name in FIGURES),
    ).where(owned_by(tally, org_id), tally.day.between(first, last))
    live = select(
        literal_column("'live'"),
        ist_day(session, Call.created_at),
        literal_column("1"),
        case((Call.answered_at.is_not(None), 1), else_=0),
        case((Call.bridged_at.is_not(None), 1), else_=0),
        *([zero] * (len(FIGURES) - 3)),
    ).where(
        owned_by(Call, org_id),
        Call.status.in_(LIVE_STATUSES),
        Call.created_at >= dates.start,
        Call.created_at < dates.end,
    )
    pairs = select(
        literal_column("'pairs'"),
        select(func.max(CallCount.pairs_from)).where(owned_by(CallCount, org_id)).scalar_subquery(),
        func.coalesce(
            select(func.sum(CallDayPairs.pairs))
            .where(
                owned_by(CallDayPairs, org_id),
                CallDayPairs.day.between(first, last),
                CallDayPairs.since < first,
            )
            .scalar_subquery(),
            0,
        ),
        *([zero] * (len(FIGURES) - 1)),
    )
    found = Tallied(days={}, live=0, pairs=None)
    tallied_from: Any = None
    counted_pairs = 0
    for kind, day, *values in await session.execute(union_all(ended_rows, live, pairs)):
        if kind == "pairs":
            tallied_from, counted_pairs = day, int(values[0])
            continue
        if kind == "live":
            found.live += 1
        sums = found.days.setdefault(_as_date(day), dict.fromkeys(FIGURES, 0))
        for name, value in zip(FIGURES, values, strict=True):
            sums[name] += int(value)
    if tallied_from is None or _as_date(tallied_from) <= first:
        found.pairs = counted_pairs
    return found


def ist_day(session: AsyncSession, column: Any) -> Any:
    """The Asia/Kolkata date of a stored instant, in SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("Asia/Kolkata", column))
    return func.date(column, "+330 minutes")  # SQLite stores naive UTC
