"""Figures of deleted calls, kept per organisation and Asia/Kolkata day (retention)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.calls.models import Call
from maskline.calls.tally import pair_text
from maskline.kit.crypto import KeyedDigest
from maskline.kit.daterange import DateRange
from maskline.kit.india import IST, ist_date
from maskline.kit.scope import scoped
from maskline.kit.upsert import insert_for
from maskline.stats.models import CallDayPair, CallDayRollup

# The figures a day keeps: each is a sum over the day's calls (see ``_figures``).
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


def _figures(call: Call) -> dict[str, int]:
    bridged = call.bridged_at is not None
    return {
        "calls": 1,
        "answered": int(call.answered_at is not None),
        "bridged": int(bridged),
        "completed": int(call.status == "completed"),
        "failed": int(call.status == "failed"),
        "no_answer": int(call.status == "no-answer"),
        "talk_sec": call.talk_sec,
        "bridged_talk_sec": call.talk_sec if bridged else 0,
        "billed_sec": call.billed_pulses * call.pulse_sec,
        "price_paise": call.price_paise,
    }


async def roll_up(session: AsyncSession, calls: Sequence[Call], *, digest: KeyedDigest) -> None:
    """Add the figures and pairs of ``calls`` (ended, about to be deleted) to their days."""
    days: dict[tuple[str, date], dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))
    pairs: set[tuple[str, date, str]] = set()
    for call in calls:
        key = (call.org_id, ist_date(call.created_at))
        for name, value in _figures(call).items():
            days[key][name] += value
        pairs.add((*key, digest(pair_text(call.party_a, call.party_b))))
    for (org_id, day), figures in days.items():
        insert = insert_for(session, CallDayRollup).values(org_id=org_id, day=day, **figures)
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=[CallDayRollup.org_id, CallDayRollup.day],
                set_={name: getattr(CallDayRollup, name) + figures[name] for name in FIGURES},
            )
        )
    if pairs:
        await session.execute(
            insert_for(session, CallDayPair)
            .values([{"org_id": o, "day": d, "pair": p} for o, d, p in sorted(pairs)])
            .on_conflict_do_nothing()
        )


@dataclass
class RolledUp:
    """What the rollup holds for a range: totals, figures per day, and pair digests."""

    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIGURES, 0))
    days: dict[date, dict[str, int]] = field(default_factory=dict)
    pairs: set[str] = field(default_factory=set)


def _days_within(dates: DateRange) -> tuple[date, date]:
    """The IST days whose start lies in the range (a deleted day is counted whole)."""
    assert dates.start is not None
    assert dates.end is not None
    first = ist_date(dates.start)
    if datetime.combine(first, time(0), tzinfo=IST) < dates.start:
        first += timedelta(days=1)
    return first, ist_date(dates.end - timedelta(microseconds=1))


async def rolled_up(session: AsyncSession, org_id: str, dates: DateRange) -> RolledUp:
    first, last = _days_within(dates)
    found = RolledUp()
    rows = (
        await session.execute(
            scoped(CallDayRollup, org_id).where(CallDayRollup.day.between(first, last))
        )
    ).scalars()
    for row in rows:
        figures = {name: int(getattr(row, name)) for name in FIGURES}
        found.days[row.day] = figures
        for name, value in figures.items():
            found.totals[name] += value
    if found.days:
        found.pairs = set(
            (
                await session.execute(
                    scoped(CallDayPair, org_id)
                    .where(CallDayPair.day.between(first, last))
                    .with_only_columns(CallDayPair.pair)
                    .distinct()
                )
            ).scalars()
        )
    return found
