"""A range of creation dates (SPEC §3), as the call-logs and stats queries take it.

Plain values, no web framework: the routes' query parameters are turned into a
``DateRange`` by ``maskline.kit.query.DateRangeDep``; the repositories only read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from maskline.errors import InvalidRequest
from maskline.kit.india import IST

_BARE_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class DateRange:
    """``start`` inclusive, ``end`` exclusive, both UTC (None: unbounded).

    A range whose end is not after its start cannot be built: that is the one place
    the rule "end_date must be after start_date" is checked, whether the bounds were
    given or filled in by a default.
    """

    start: datetime | None
    end: datetime | None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise InvalidRequest("end_date must be after start_date.")


def _ist_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=IST).astimezone(UTC)


def _parse(name: str, raw: str, *, end: bool) -> datetime:
    try:
        return _parse_moment(name, raw.strip(), end=end)
    except OverflowError:
        # Year 1 or 9999 moved by the IST offset (or a day) leaves datetime's range.
        raise InvalidRequest(f"{name} is outside the supported dates.") from None


def _parse_moment(name: str, text: str, *, end: bool) -> datetime:
    if _BARE_DATE.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InvalidRequest(f"{name} is not a valid date.") from None
        # A bare end date includes its whole Asia/Kolkata day.
        return _ist_midnight(day + timedelta(days=1) if end else day)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name} must be an RFC 3339 date-time or a date (YYYY-MM-DD)."
        ) from None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{name} must carry a time zone (Z or an offset).")
    moment = moment.astimezone(UTC)
    # An explicit end moment is inclusive: the exclusive bound is just after it.
    return moment + timedelta(microseconds=1) if end else moment


def parse_date_range(start_date: str | None, end_date: str | None) -> DateRange:
    """``start_date`` and ``end_date`` as given: RFC 3339 moments or Asia/Kolkata days."""
    start = _parse("start_date", start_date, end=False) if start_date is not None else None
    end = _parse("end_date", end_date, end=True) if end_date is not None else None
    return DateRange(start, end)


def last_30_ist_days(now: datetime) -> DateRange:
    today = now.astimezone(IST).date()
    return DateRange(
        _ist_midnight(today - timedelta(days=29)), _ist_midnight(today + timedelta(days=1))
    )


def thirty_ist_days_ending(end: datetime) -> DateRange:
    """The 30 Asia/Kolkata calendar days whose last one holds ``end`` (exclusive), up to it."""
    last_day = (end - timedelta(microseconds=1)).astimezone(IST).date()
    try:
        return DateRange(_ist_midnight(last_day - timedelta(days=29)), end)
    except OverflowError:
        raise InvalidRequest("end_date is outside the supported dates.") from None
