from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from maskline.calls.repository import Day, Totals
from maskline.kit.clock import rfc3339
from maskline.kit.daterange import DateRange
from maskline.kit.decimals import ratio
from maskline.kit.india import ist_date
from maskline.kit.money import paise_to_rupees

Rupees = int | float


class DailyRow(BaseModel):
    date: str
    calls: int
    completed: int
    billed_minutes: float
    cost: Rupees


class StatsOut(BaseModel):
    # The seed API's names.
    start_date: str | None
    end_date: str | None
    total_sessions: int
    active_sessions: int
    total_mappings: int
    total_calls: int
    total_minutes: float
    total_cost: Rupees
    answered_calls: int
    failed_calls: int
    # maskline's.
    completed: int
    failed: int
    no_answer: int
    in_progress: int
    answer_rate: float
    bridge_rate: float
    billed_minutes: float
    average_talk_sec: float
    daily: list[DailyRow]

    @classmethod
    def build(cls, dates: DateRange, totals: Totals, days: list[Day]) -> StatsOut:
        assert dates.start is not None
        assert dates.end is not None
        by_day = {d.day: d for d in days}
        rows = []
        day, last = ist_date(dates.start), ist_date(dates.end - timedelta(microseconds=1))
        while day <= last:
            found = by_day.get(day)
            rows.append(
                DailyRow(
                    date=day.isoformat(),
                    calls=found.calls if found else 0,
                    completed=found.completed if found else 0,
                    billed_minutes=ratio(found.billed_sec if found else 0, 60, 2),
                    cost=paise_to_rupees(found.price_paise if found else 0),
                )
            )
            day += timedelta(days=1)
        return cls(
            start_date=rfc3339(dates.start),
            end_date=rfc3339(dates.end - timedelta(seconds=1)),
            total_sessions=totals.calls,
            active_sessions=totals.live,
            total_mappings=totals.pairs,
            total_calls=totals.calls,
            total_minutes=ratio(totals.talk_sec, 60, 2),
            total_cost=paise_to_rupees(totals.price_paise),
            answered_calls=totals.answered,
            failed_calls=totals.failed + totals.no_answer,
            completed=totals.completed,
            failed=totals.failed,
            no_answer=totals.no_answer,
            in_progress=totals.live,
            answer_rate=ratio(totals.answered, totals.calls, 4),
            bridge_rate=ratio(totals.bridged, totals.calls, 4),
            billed_minutes=ratio(totals.billed_sec, 60, 2),
            average_talk_sec=ratio(totals.bridged_talk_sec, totals.bridged, 1),
            daily=rows,
        )


class StatsEnvelope(BaseModel):
    data: StatsOut
