"""Synthetic ended calls in bulk, for benchmarks (``maskline calls seed``).

The calls are written as the product writes real ones: the same columns, the same
indexes, and the same tallies (``calls/tally.py``: the organisation's count, its
pairs, its daily figures), through the same functions, a chunk at a time, in the
order the calls were created. Money is not moved: a synthetic call carries its price
but no ledger entry, so the wallet still equals its ledger.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.calls import tally
from maskline.calls.models import Call, CallPair
from maskline.kit.india import ist_date
from maskline.kit.money import pulse_price_paise
from maskline.kit.scope import owned_by

CHUNK = 20_000
SQLITE_CACHE_KIB = 512 * 1024
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


@dataclass(frozen=True, slots=True)
class Seeded:
    calls: int
    first: datetime
    last: datetime


class SeedCollision(Exception):
    """A synthetic pair is one the organisation already called (then run it again)."""


def _mobile(rng: random.Random) -> str:
    return f"{rng.choice('6789')}{rng.randrange(10**9):09d}"


def _sqlite_time(value: datetime | None) -> str | None:
    # As SQLAlchemy's SQLite DateTime stores it (UTCDateTime: naive UTC).
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


async def _bulk_insert(
    conn: AsyncConnection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Rows straight to the driver: COPY on PostgreSQL, ``executemany`` on SQLite."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        await raw.copy_records_to_table(table, records=rows, columns=list(columns))
        return
    # A page cache that holds the indexes being filled (the connection's own, and
    # the command's connection ends with it): rows in creation order land in random
    # places of the party indexes, which the default 2 MB cache reads from disk again.
    await raw.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    await raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608


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
    ``now``: a mix of outcomes, parties (a few hundred agents calling many customers,
    some of them again), talk times and prices; then the tallies, as the batches of
    real calls would have left them."""
    conn = await session.connection()
    sqlite = conn.dialect.name == "sqlite"
    when: Callable[[datetime | None], Any] = _sqlite_time if sqlite else (lambda v: v)
    columns = [c.name for c in Call.__table__.columns if c.name != "id"]
    pulse_price = pulse_price_paise(rate_paise, pulse_sec)
    agents = [_mobile(rng) for _ in range(max(1, min(500, count // 200)))]
    customers = [_mobile(rng) for _ in range(max(1, count // 3))]
    masked = [f"9180{rng.randrange(10**8):08d}" for _ in range(20)]
    # Every call has ended by ``now``: none is created in its last hour.
    span = max(1.0, timedelta(days=days).total_seconds() - 3600)
    start = now - timedelta(days=days)
    offsets = sorted(rng.random() * span for _ in range(count))
    outcomes = rng.choices(OUTCOMES, [o[0] for o in OUTCOMES], k=count)
    sums: dict[date, list[int]] = defaultdict(lambda: [0] * len(tally.FIGURES))
    pair_days: dict[tuple[str, str], set[date]] = defaultdict(set)
    at = {name: index for index, name in enumerate(columns)}
    template: list[Any] = [None] * len(columns)
    constants = {
        "org_id": org_id,
        "carrier": "sim",
        "ring_timeout_sec": 30,
        "record": False,
        "rate_paise": rate_paise,
        "pulse_sec": pulse_sec,
        "pulse_price_paise": pulse_price,
        "hold_paise": 0,
        "recording_status": "none",
    }
    for name, value in constants.items():
        template[at[name]] = value
    rows: list[tuple[Any, ...]] = []
    for offset, outcome in zip(offsets, outcomes, strict=True):
        _, status, cause, by, leg, sip, answered, bridged = outcome
        created = start + timedelta(seconds=offset)
        a, b = rng.choice(agents), rng.choice(customers)
        if a == b:
            b = _mobile(rng)
        started = created + timedelta(milliseconds=rng.randrange(50, 400))
        answered_at = started + timedelta(seconds=rng.randrange(2, 25)) if answered else None
        bridged_at = (
            answered_at + timedelta(seconds=rng.randrange(3, 20))
            if answered_at and bridged
            else None
        )
        talk = int(rng.expovariate(1 / 150)) + 1 if bridged_at else 0
        base = bridged_at or answered_at or started
        ended_at = base + timedelta(seconds=talk if bridged_at else rng.randrange(1, 30))
        pulses = max(1, math.ceil(talk / pulse_sec)) if bridged_at else 0
        row = template.copy()
        row[at["call_sid"]] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        row[at["party_a"]], row[at["party_b"]] = a, b
        row[at["masked_number"]] = rng.choice(masked)
        row[at["status"]], row[at["hangup_cause"]], row[at["hangup_by"]] = status, cause, by
        row[at["failed_leg"]], row[at["sip_code"]] = leg, sip
        row[at["created_at"]], row[at["started_at"]] = when(created), when(started)
        row[at["answered_at"]], row[at["bridged_at"]] = when(answered_at), when(bridged_at)
        row[at["ended_at"]] = when(ended_at)
        row[at["granted_pulses"]] = row[at["billed_pulses"]] = pulses
        row[at["price_paise"]], row[at["talk_sec"]] = pulses * pulse_price, talk
        row[at["event_seq"]] = 3 + int(answered) + int(bridged)
        rows.append(tuple(row))
        day = ist_date(created)
        pair_days[(a, b)].add(day)
        figures = tally.figures(
            status=status,
            answered=answered,
            bridged=bridged,
            talk_sec=talk,
            billed_sec=pulses * pulse_sec,
            price_paise=pulses * pulse_price,
        )
        day_sums = sums[day]
        for index, value in enumerate(figures):
            day_sums[index] += value
    for chunk in range(0, count, CHUNK):
        await _bulk_insert(conn, Call.__tablename__, columns, rows[chunk : chunk + CHUNK])
    await tally.add_calls(conn, {org_id: count})
    await tally.count_ended_calls(
        conn, [tally.EndedCall(org_id, day, tuple(f)) for day, f in sorted(sums.items())]
    )
    await _seed_pairs(conn, org_id, pair_days, pair_digest=pair_digest, when=when)
    first = start + timedelta(seconds=offsets[0])
    return Seeded(count, first, start + timedelta(seconds=offsets[-1]))


async def _seed_pairs(
    conn: AsyncConnection,
    org_id: str,
    pair_days: dict[tuple[str, str], set[date]],
    *,
    pair_digest: Callable[[str], str],
    when: Callable[[Any], Any],
) -> None:
    """The synthetic pairs' rows and their days' counts (``tally``): each pair's days
    in order, each after the one before it."""
    digests = {pair: pair_digest(tally.pair_text(*pair)) for pair in pair_days}
    keys = list(digests.values())
    for at in range(0, len(keys), CHUNK):
        taken = await conn.execute(
            select(CallPair.pair).where(
                owned_by(CallPair, org_id), CallPair.pair.in_(keys[at : at + CHUNK])
            )
        )
        if taken.first() is not None:
            raise SeedCollision("a synthetic pair was already called: run the seed again.")
    firsts: Counter[tuple[str, date, date]] = Counter()
    rows: list[tuple[Any, ...]] = []
    for pair, called in pair_days.items():
        ordered = sorted(called)
        since = tally.NEVER
        for day in ordered:
            firsts[(org_id, day, since)] += 1
            since = day
        prev = ordered[-2] if len(ordered) > 1 else None
        rows.append((org_id, digests[pair], _day(ordered[-1], when), _day(prev, when)))
    for at in range(0, len(rows), CHUNK):
        await _bulk_insert(
            conn,
            CallPair.__tablename__,
            ["org_id", "pair", "last_day", "prev_day"],
            rows[at : at + CHUNK],
        )
    await tally.add_firsts(conn, firsts)


def _day(value: date | None, when: Callable[[Any], Any]) -> Any:
    if value is None:
        return None
    return value.isoformat() if when is _sqlite_time else value
