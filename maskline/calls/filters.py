"""The call-logs filters on status and party (SPEC §3), as plain values; the date
range is ``maskline.kit.daterange``."""

from __future__ import annotations

from maskline.calls.flow import Status
from maskline.errors import InvalidRequest
from maskline.kit.phone import normalise_mobile

STATUSES = frozenset(s.value for s in Status)


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
