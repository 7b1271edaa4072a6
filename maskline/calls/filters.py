"""Query filters of call-logs and stats (SPEC §3): statuses, dates in IST, a party."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import Depends, Query

from maskline.calls.flow import Status
from maskline.errors import InvalidRequest
from maskline.kit.india import IST
from maskline.kit.phone import normalise_mobile

_BARE_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
STATUSES = frozenset(s.value for s in Status)


@dataclass(frozen=True, slots=True)
class DateRange:
    """``start`` inclusive, ``end`` exclusive, both UTC (None: unbounded)."""

    start: datetime | None
    end: datetime | None


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


def date_range(
    start_date: str | None, end_date: str | None, *, start_alias: str | None, end_alias: str | None
) -> DateRange:
    start_raw = start_date if start_date is not None else start_alias
    end_raw = end_date if end_date is not None else end_alias
    start = _parse("start_date", start_raw, end=False) if start_raw is not None else None
    end = _parse("end_date", end_raw, end=True) if end_raw is not None else None
    if start is not None and end is not None and end <= start:
        raise InvalidRequest("end_date must be after start_date.")
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


def statuses(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    values = [v.strip() for v in raw.split(",") if v.strip()]
    unknown = [v for v in values if v not in STATUSES]
    if not values or unknown:
        raise InvalidRequest(
            "status must be one or more of " + ", ".join(sorted(STATUSES)) + ", comma-separated."
        )
    return values


def party(raw: str | None) -> str | None:
    if raw is None:
        return None
    number = normalise_mobile(raw)
    if number is None:
        raise InvalidRequest("party must be a 10-digit Indian mobile number.")
    return number


DateParam = Annotated[str | None, Query(max_length=40)]


def _date_query(
    start_date: DateParam = None,
    end_date: DateParam = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: DateParam = None,
) -> DateRange:
    """``start_date``/``end_date`` (aliases ``from``/``to``) as query parameters."""
    return date_range(start_date, end_date, start_alias=from_, end_alias=to)


DateRangeDep = Annotated[DateRange, Depends(_date_query)]
