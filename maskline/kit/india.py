"""Indian calendar facts: the Asia/Kolkata zone and the April–March financial year."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")


def ist_date(moment: datetime) -> date:
    return moment.astimezone(IST).date()


def financial_year_code(day: date) -> str:
    """``2627`` for FY 2026-27 (1 April 2026 to 31 March 2027)."""
    start = day.year if day.month >= 4 else day.year - 1
    return f"{start % 100:02d}{(start + 1) % 100:02d}"
