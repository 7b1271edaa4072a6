from __future__ import annotations

from fastapi import APIRouter

from maskline.calls import filters, repository
from maskline.errors import InvalidRequest, RateLimited, Unauthorized, error_responses
from maskline.keys.auth import KeyDep
from maskline.kit.web import RuntimeDep
from maskline.stats.schemas import StatsEnvelope, StatsOut

router = APIRouter(prefix="/v1/masking", tags=["stats"])


@router.get(
    "/stats",
    response_model=StatsEnvelope,
    responses=error_responses(InvalidRequest, Unauthorized, RateLimited),
)
async def get_stats(
    principal: KeyDep,
    runtime: RuntimeDep,
    dates: filters.DateRangeDep,
) -> StatsEnvelope:
    """Usage over the calls created in a date range; by default the last 30 days (IST)."""
    default = filters.last_30_ist_days(runtime.clock.now())
    dates = filters.DateRange(dates.start or default.start, dates.end or default.end)
    if dates.start is not None and dates.end is not None and dates.end <= dates.start:
        raise InvalidRequest("end_date must be after start_date.")
    async with runtime.db.read() as session:
        totals = await repository.totals(session, principal.org_id, dates)
        days = await repository.daily(session, principal.org_id, dates)
    return StatsEnvelope(data=StatsOut.build(dates, totals, days))
