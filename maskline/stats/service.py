"""Usage statistics (SPEC §3): the stored calls, plus the rollup of deleted ones."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.calls import repository, tally
from maskline.calls.repository import Day, Totals
from maskline.kit.crypto import KeyedDigest
from maskline.kit.daterange import DateRange
from maskline.kit.india import IST, ist_date
from maskline.stats.rollup import rolled_up


def _whole_days(dates: DateRange) -> tuple[date, date] | None:
    """The IST days ``dates`` spans when it starts and ends at IST midnights."""
    assert dates.start is not None
    assert dates.end is not None
    first, after = ist_date(dates.start), ist_date(dates.end)
    if dates.start != datetime.combine(first, time(0), tzinfo=IST):
        return None
    if dates.end != datetime.combine(after, time(0), tzinfo=IST):
        return None
    return first, after - timedelta(days=1)


async def usage(
    session: AsyncSession, org_id: str, dates: DateRange, *, digest: KeyedDigest
) -> tuple[Totals, list[Day]]:
    """Totals and daily figures over the calls created in ``dates``, deleted ones included.

    A range of whole IST days (every range given as dates) is read from the tallies
    kept as calls are placed and end (``calls/tally.py``); any other range counts the
    stored calls and adds the rollup of deleted ones.
    """
    whole = _whole_days(dates)
    if whole is not None:
        found = await tally.tallied(session, org_id, *whole, dates)
        if found.pairs is not None:
            return _from_tallies(found, found.pairs)
    totals = await repository.totals(session, org_id, dates)
    days = await repository.daily(session, org_id, dates)
    rolled = await rolled_up(session, org_id, dates)
    if not rolled.days:
        return totals, days
    # Distinct pairs across stored and deleted calls: the rollup keeps only digests.
    stored = await repository.pairs(session, org_id, dates)
    pairs = rolled.pairs | {digest(tally.pair_text(a, b)) for a, b in stored}
    r = rolled.totals
    totals = replace(
        totals,
        calls=totals.calls + r["calls"],
        pairs=len(pairs),
        talk_sec=totals.talk_sec + r["talk_sec"],
        bridged_talk_sec=totals.bridged_talk_sec + r["bridged_talk_sec"],
        price_paise=totals.price_paise + r["price_paise"],
        answered=totals.answered + r["answered"],
        bridged=totals.bridged + r["bridged"],
        completed=totals.completed + r["completed"],
        failed=totals.failed + r["failed"],
        no_answer=totals.no_answer + r["no_answer"],
        billed_sec=totals.billed_sec + r["billed_sec"],
    )
    by_day = {d.day: d for d in days}
    for day, f in rolled.days.items():
        kept = by_day.get(day, Day(day=day, calls=0, completed=0, billed_sec=0, price_paise=0))
        by_day[day] = Day(
            day=day,
            calls=kept.calls + f["calls"],
            completed=kept.completed + f["completed"],
            billed_sec=kept.billed_sec + f["billed_sec"],
            price_paise=kept.price_paise + f["price_paise"],
        )
    return totals, [by_day[day] for day in sorted(by_day)]


def _from_tallies(found: tally.Tallied, pairs: int) -> tuple[Totals, list[Day]]:
    sums = dict.fromkeys(tally.FIGURES, 0)
    for figures in found.days.values():
        for name, value in figures.items():
            sums[name] += value
    totals = Totals(
        calls=sums["calls"],
        live=found.live,
        pairs=pairs,
        talk_sec=sums["talk_sec"],
        bridged_talk_sec=sums["bridged_talk_sec"],
        price_paise=sums["price_paise"],
        answered=sums["answered"],
        bridged=sums["bridged"],
        completed=sums["completed"],
        failed=sums["failed"],
        no_answer=sums["no_answer"],
        billed_sec=sums["billed_sec"],
    )
    days = [
        Day(
            day=day,
            calls=f["calls"],
            completed=f["completed"],
            billed_sec=f["billed_sec"],
            price_paise=f["price_paise"],
        )
        for day, f in sorted(found.days.items())
    ]
    return totals, days
