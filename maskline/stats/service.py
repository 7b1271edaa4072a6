"""Usage statistics (SPEC §3): the stored calls, plus the rollup of deleted ones."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.calls import repository
from maskline.calls.repository import Day, Totals
from maskline.kit.crypto import KeyedDigest
from maskline.kit.daterange import DateRange
from maskline.stats.rollup import pair_text, rolled_up


async def usage(
    session: AsyncSession, org_id: str, dates: DateRange, *, digest: KeyedDigest
) -> tuple[Totals, list[Day]]:
    """Totals and daily figures over the calls created in ``dates``, deleted ones included."""
    totals = await repository.totals(session, org_id, dates)
    days = await repository.daily(session, org_id, dates)
    rolled = await rolled_up(session, org_id, dates)
    if not rolled.days:
        return totals, days
    # Distinct pairs across stored and deleted calls: the rollup keeps only digests.
    stored = await repository.pairs(session, org_id, dates)
    pairs = rolled.pairs | {digest(pair_text(a, b)) for a, b in stored}
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
