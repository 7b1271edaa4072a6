"""Synthetic ended calls in bulk, for benchmarks (``maskline calls seed``).

The calls are written as the product writes real ones: the same columns, the same
indexes, and the same tallies (``calls/tally.py``: the organisation's count, its
pairs, its daily figures, through its functions). Money is not moved: a synthetic
call carries its price but no ledger entry, so the wallet still equals its ledger.

Fast because nothing is done per row that can be done per column or per day: the
calls are generated column-wise as plain tuples (no ORM objects), times as integer
microseconds; the tallies are summed per (day, outcome); the rows go straight to the
driver (COPY on PostgreSQL, one ``executemany`` on SQLite). The call ids are drawn
first and handed out in creation order, so the unique ``call_sid`` index is filled at
its end; and when the seed is at least as large as the table, the table's other
indexes are dropped and rebuilt from their own definitions after the load (a sort,
not a million random inserts), which locks the calls table for the seed's
transaction: ``docs/decisions.md``, "calls seed".
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.calls import tally
from maskline.calls.models import Call, CallPair
from maskline.kit.money import pulse_price_paise
from maskline.kit.scope import owned_by

CHUNK = 50_000
SQLITE_CACHE_KIB = 512 * 1024
PG_SORT_MEMORY = "256MB"
# (weight, status, hangup_cause, hangup_by, failed_leg, sip_code, answered, bridged)
OUTCOMES: tuple[tuple[int, str, str, str, str | None, int | None, bool, bool], ...] = (
    (52, "completed", "NORMAL_CLEARING", "party_a", None, None, True, True),
    (8, "completed", "NORMAL_CLEARING", "party_b", None, None, True, True),
    (3, "completed", "ALLOTTED_TIMEOUT", "system", None, None, True, True),
    (1, "completed", "BALANCE_EXHAUSTED", "system", None, None, True, True),
    (1, "completed", "RECOVERY_ON_TIMER_EXPIRE", "system", None, None, True, True),
    (12, "no-answer", "NO_ANSWER", "system", "party_a", 487, False, False),
    (7, "failed", "USER_BUSY", "party_a", "party_a", 486, False, False),
    (3, "failed", "CALL_REJECTED", "party_a", "party_a", 603, False, False),
    (2, "failed", "UNALLOCATED_NUMBER", "system", "party_a", 404, False, False),
    (2, "failed", "NORMAL_TEMPORARY_FAILURE", "system", "party_a", 503, False, False),
    (5, "failed", "USER_BUSY", "party_b", "party_b", 486, True, False),
    (2, "failed", "ORIGINATOR_CANCEL", "party_a", None, None, True, False),
    (2, "failed", "SYSTEM_SHUTDOWN", "system", None, None, True, False),
)
# The columns a synthetic call sets; the others keep their defaults (null).
COLUMNS = (
    "call_sid",
    "org_id",
    "carrier",
    "party_a",
    "party_b",
    "masked_number",
    "status",
    "hangup_cause",
    "hangup_by",
    "failed_leg",
    "sip_code",
    "ring_timeout_sec",
    "record",
    "created_at",
    "started_at",
    "answered_at",
    "bridged_at",
    "ended_at",
    "rate_paise",
    "pulse_sec",
    "pulse_price_paise",
    "hold_paise",
    "granted_pulses",
    "billed_pulses",
    "price_paise",
    "talk_sec",
    "recording_status",
    "event_seq",
)
SECOND = 1_000_000
DAY = 86_400 * SECOND
# Asia/Kolkata has kept +05:30, without summer time, since 1945.
IST_OFFSET = 19_800 * SECOND
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# PostgreSQL counts time from 2000-01-01.
PG_EPOCH_SHIFT = 946_684_800 * SECOND
NAIVE_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Seeded:
    calls: int
    first: datetime
    last: datetime


class SeedCollision(Exception):
    """A synthetic pair is one the organisation already called (then run it again)."""


@dataclass(slots=True)
class _Synthetic:
    """The calls' rows in creation order, and what the tallies need of them."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    # (IST day number, outcome index) -> [calls, talk_sec, billed_sec, price_paise].
    groups: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    # (party_a, party_b) -> [last day, previous day]; (day, since) -> pairs first called.
    pairs: dict[tuple[str, str], list[int | None]] = field(default_factory=dict)
    firsts: Counter[tuple[int, int | None]] = field(default_factory=Counter)


def _mobile(rng: random.Random) -> str:
    return f"{rng.choice('6789')}{rng.randrange(10**9):09d}"


def _call_sids(rng: random.Random, count: int) -> list[str]:
    """``count`` random version-4 UUIDs, in order (handed out in creation order, they
    fill the unique index at its end)."""
    digits = rng.randbytes(16 * count).hex()
    variant = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
    sids = []
    for at in range(0, 32 * count, 32):
        h = digits[at : at + 32]
        sids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:]}")
    sids.sort()
    return sids


def _as_is(us: int | None) -> int | None:
    # PostgreSQL's times go to COPY as microseconds (``_microseconds_codec``).
    return us


def _sqlite_time() -> Callable[[int | None], str | None]:
    """Microseconds since the epoch as SQLite's UTC column stores them (``UTCDateTime``:
    naive ISO text), each minute's text made once."""
    minutes: dict[int, str] = {}

    def text_of(us: int | None) -> str | None:
        if us is None:
            return None
        minute, rest = divmod(us, 60 * SECOND)
        head = minutes.get(minute)
        if head is None:
            head = minutes[minute] = (NAIVE_EPOCH + timedelta(minutes=minute)).isoformat(" ")[:17]
        second, fraction = divmod(rest, SECOND)
        return f"{head}{second:02d}.{fraction:06d}"

    return text_of


def _day(number: int) -> date:
    return date(1970, 1, 1) + timedelta(days=number)


def _synthesise(
    org_id: str,
    *,
    count: int,
    start: datetime,
    span_sec: float,
    rate_paise: int,
    pulse_sec: int,
    rng: random.Random,
    when: Callable[[int | None], Any],
) -> _Synthetic:
    """The calls (a few hundred agents calling many customers, some of them again)."""
    out = _Synthetic()
    pulse_price = pulse_price_paise(rate_paise, pulse_sec)
    agents = [_mobile(rng) for _ in range(max(1, min(500, count // 200)))]
    # Each customer is served by one agent (an order's) and the two talk a few times.
    served = []
    for agent in rng.choices(agents, k=max(1, count // 3)):
        customer = _mobile(rng)
        served.append((agent, customer if customer != agent else _mobile(rng)))
    parties = rng.choices(served, k=count)
    masked = rng.choices([f"9180{rng.randrange(10**8):08d}" for _ in range(20)], k=count)
    outcomes = rng.choices(range(len(OUTCOMES)), [o[0] for o in OUTCOMES], k=count)
    origin = round((start - EPOCH).total_seconds() * SECOND)
    span = span_sec * SECOND
    draw, expo = rng.random, rng.expovariate
    created = sorted(origin + int(draw() * span) for _ in range(count))
    sids = _call_sids(rng, count)
    rows, groups, pairs, firsts = out.rows, out.groups, out.pairs, out.firsts
    for i in range(count):
        at, kind = created[i], outcomes[i]
        _, status, cause, by, leg, sip, answered, bridged = OUTCOMES[kind]
        pair = parties[i]
        started = at + 50_000 + int(draw() * 350_000)
        answered_at = bridged_at = None
        talk = pulses = 0
        if not answered:
            ended = started + (1 + int(draw() * 29)) * SECOND
        else:
            answered_at = started + (2 + int(draw() * 23)) * SECOND
            if not bridged:
                ended = answered_at + (1 + int(draw() * 29)) * SECOND
            else:
                bridged_at = answered_at + (3 + int(draw() * 17)) * SECOND
                talk = int(expo(1 / 150)) + 1
                pulses = -(-talk // pulse_sec)
                ended = bridged_at + talk * SECOND
        rows.append(
            (
                sids[i],
                org_id,
                "sim",
                pair[0],
                pair[1],
                masked[i],
                status,
                cause,
                by,
                leg,
                sip,
                30,
                False,
                when(at),
                when(started),
                when(answered_at),
                when(bridged_at),
                when(ended),
                rate_paise,
                pulse_sec,
                pulse_price,
                0,
                pulses,
                pulses,
                pulses * pulse_price,
                talk,
                "none",
                3 + answered + bridged,
            )
        )
        day = (at + IST_OFFSET) // DAY
        group = groups.get((day, kind))
        if group is None:
            group = groups[(day, kind)] = [0, 0, 0, 0]
        group[0] += 1
        if pulses:
            group[1] += talk
            group[2] += pulses * pulse_sec
            group[3] += pulses * pulse_price
        seen = pairs.get(pair)
        if seen is None:
            pairs[pair] = [day, None]
            firsts[(day, None)] += 1
        elif seen[0] != day:
            firsts[(day, seen[0])] += 1
            seen[1], seen[0] = seen[0], day
    return out


def _ended_calls(org_id: str, synthetic: _Synthetic) -> list[tally.EndedCall]:
    """The days' figures: ``tally.figures`` of each (day, outcome) group, whose
    per-call part is counted once per call and whose sums are added once."""
    days: dict[int, list[int]] = {}
    for (day, kind), (n, talk, billed, price) in synthetic.groups.items():
        _, status, _, _, _, _, answered, bridged = OUTCOMES[kind]
        unit = tally.figures(
            status=status,
            answered=answered,
            bridged=bridged,
            talk_sec=0,
            billed_sec=0,
            price_paise=0,
        )
        summed = tally.figures(
            status=status,
            answered=answered,
            bridged=bridged,
            talk_sec=talk,
            billed_sec=billed,
            price_paise=price,
        )
        figures = days.setdefault(day, [0] * len(tally.FIGURES))
        for index, (one, all_) in enumerate(zip(unit, summed, strict=True)):
            figures[index] += n * one + (all_ - one)
    return [
        tally.EndedCall(org_id, _day(day), tuple(figures)) for day, figures in sorted(days.items())
    ]


async def _bulk_insert(
    conn: AsyncConnection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Rows straight to the driver: COPY on PostgreSQL, ``executemany`` on SQLite."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        async with _microseconds_codec(raw):
            for at in range(0, len(rows), CHUNK):
                chunk = rows[at : at + CHUNK]
                await raw.copy_records_to_table(table, records=chunk, columns=list(columns))
        return
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    for at in range(0, len(rows), CHUNK):
        chunk = rows[at : at + CHUNK]
        await raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", chunk)  # noqa: S608


@asynccontextmanager
async def _microseconds_codec(raw: Any) -> AsyncIterator[None]:
    """asyncpg takes ``timestamptz`` values as microseconds since the Unix epoch for the
    load (a datetime object each would cost more than the rest of the row), and its
    own codec back after."""
    await raw.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=lambda us: (us - PG_EPOCH_SHIFT,),
        decoder=lambda value: EPOCH + timedelta(microseconds=value[0] + PG_EPOCH_SHIFT),
        format="tuple",
    )
    try:
        yield
    finally:
        await raw.reset_type_codec("timestamptz", schema="pg_catalog")


async def _foreign_keys(conn: AsyncConnection, table: str) -> list[tuple[str, str]]:
    """(name, definition) of ``table``'s foreign keys on PostgreSQL (checked row by row
    during a load, by one join when added back; SQLite checks none at all here)."""
    if conn.dialect.name != "postgresql":
        return []
    found = await conn.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = CAST(:table AS regclass) AND contype = 'f' ORDER BY conname"
        ),
        {"table": table},
    )
    return [(str(name), str(definition)) for name, definition in found]


async def _secondary_indexes(conn: AsyncConnection, table: str) -> list[tuple[str, str]]:
    """(name, definition) of ``table``'s indexes that no constraint owns."""
    if conn.dialect.name == "postgresql":
        found = await conn.execute(
            text(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = CAST(:table AS regclass)"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
                " ORDER BY c.relname"
            ),
            {"table": table},
        )
    else:
        found = await conn.execute(
            text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                " AND tbl_name = :table AND sql IS NOT NULL ORDER BY name"
            ),
            {"table": table},
        )
    return [(str(name), str(sql)) for name, sql in found]


@asynccontextmanager
async def _load_mode(conn: AsyncConnection, table: str, *, rebuild: bool) -> AsyncIterator[None]:
    """``table`` made ready for a bulk load and whole again after: when ``rebuild``,
    its secondary indexes and foreign keys dropped, then made again from their own
    definitions (a sort and a join instead of a random insert and a lookup a row)."""
    if conn.dialect.name == "postgresql":
        # The index builds' sorts in memory (this transaction only).
        await conn.execute(text(f"SET LOCAL maintenance_work_mem = '{PG_SORT_MEMORY}'"))
    else:
        # A page cache that holds the indexes being filled (the command's connection
        # ends with the command).
        await conn.execute(text(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}"))
    indexes = await _secondary_indexes(conn, table) if rebuild else []
    keys = await _foreign_keys(conn, table) if rebuild else []
    for name, _ in keys:
        await conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _ in indexes:
        await conn.execute(text(f'DROP INDEX "{name}"'))
    yield
    for _, definition in indexes:
        await conn.execute(text(definition))
    for name, definition in keys:
        await conn.execute(text(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'))


async def seed_calls(
    session: AsyncSession,
    org_id: str,
    *,
    count: int,
    days: int,
    now: datetime,
    rate_paise: int,
    pulse_sec: int,
    pair_digest: Callable[[str], str],
    rng: random.Random,
) -> Seeded:
    """Write ``count`` ended calls of ``org_id`` created over the ``days`` days before
    ``now``: a mix of outcomes, parties, talk times and prices; then the tallies, as
    the batches of real calls would have left them."""
    conn = await session.connection()
    sqlite = conn.dialect.name == "sqlite"
    when = _sqlite_time() if sqlite else _as_is
    # Every call has ended by ``now``: none is created in its last hour.
    span_sec = max(1.0, timedelta(days=days).total_seconds() - 3600)
    start = now - timedelta(days=days)
    synthetic = _synthesise(
        org_id,
        count=count,
        start=start,
        span_sec=span_sec,
        rate_paise=rate_paise,
        pulse_sec=pulse_sec,
        rng=rng,
        when=when,
    )
    stored = await conn.scalar(select(func.coalesce(func.max(Call.id), 0)))
    rebuild = count >= int(stored or 0)
    async with _load_mode(conn, Call.__tablename__, rebuild=rebuild):
        await _bulk_insert(conn, Call.__tablename__, COLUMNS, synthetic.rows)
    await tally.add_calls(conn, {org_id: count})
    await tally.count_ended_calls(conn, _ended_calls(org_id, synthetic))
    async with _load_mode(conn, CallPair.__tablename__, rebuild=rebuild):
        await _seed_pairs(conn, org_id, synthetic, pair_digest=pair_digest, sqlite=sqlite)
    created = COLUMNS.index("created_at")
    first, last = synthetic.rows[0][created], synthetic.rows[-1][created]
    return Seeded(count, _moment(first), _moment(last))


def _moment(value: Any) -> datetime:
    if isinstance(value, int):
        return EPOCH + timedelta(microseconds=value)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


async def _seed_pairs(
    conn: AsyncConnection,
    org_id: str,
    synthetic: _Synthetic,
    *,
    pair_digest: Callable[[str], str],
    sqlite: bool,
) -> None:
    """The synthetic pairs' rows (in digest order: the primary key filled at its end
    for a new organisation) and their days' counts (``tally``)."""

    def day(number: int | None) -> Any:
        if number is None:
            return None
        return _day(number).isoformat() if sqlite else _day(number)

    days = {
        number: day(number) for number in {d for seen in synthetic.pairs.values() for d in seen}
    }
    rows = [
        (org_id, pair_digest(tally.pair_text(a, b)), days[last], days[prev])
        for (a, b), (last, prev) in synthetic.pairs.items()
    ]
    rows.sort(key=itemgetter(1))
    already = await conn.scalar(select(CallPair.pair).where(owned_by(CallPair, org_id)).limit(1))
    if already is not None:
        keys = [row[1] for row in rows]
        for at in range(0, len(keys), CHUNK):
            taken = await conn.execute(
                select(CallPair.pair).where(
                    owned_by(CallPair, org_id), CallPair.pair.in_(keys[at : at + CHUNK])
                )
            )
            if taken.first() is not None:
                raise SeedCollision("a synthetic pair was already called: run the seed again.")
    await _bulk_insert(
        conn, CallPair.__tablename__, ["org_id", "pair", "last_day", "prev_day"], rows
    )
    await tally.add_firsts(
        conn,
        {
            (org_id, _day(d), tally.NEVER if since is None else _day(since)): n
            for (d, since), n in synthetic.firsts.items()
        },
    )
