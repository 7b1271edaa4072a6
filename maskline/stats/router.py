from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends

from maskline.errors import InvalidRequest, RateLimited, Unauthorized, error_responses
from maskline.keys.auth import KeyDep
from maskline.kit.crypto import KeyedDigest
from maskline.kit.daterange import DateRange, last_30_ist_days, thirty_ist_days_ending
from maskline.kit.query import DateRangeDep
from maskline.kit.web import Services, process_services
from maskline.stats import service
from maskline.stats.schemas import StatsEnvelope, StatsOut

# SPEC §3: a range is answered with one daily row per day, so it is bounded.
MAX_RANGE = timedelta(days=366)

router = APIRouter(prefix="/v1/masking", tags=["stats"])


class StatsServices(Services, Protocol):
    """What the stats route uses of the running process."""

    # Digests of A–B pairs in the rollup of deleted calls (never the numbers).
    pair_digest: KeyedDigest


RuntimeDep = Annotated[StatsServices, Depends(process_services)]


@router.get(
    "/stats",
    response_model=StatsEnvelope,
    responses=error_responses(InvalidRequest, Unauthorized, RateLimited),
)
async def get_stats(
    principal: KeyDep,
    runtime: RuntimeDep,
    dates: DateRangeDep,
) -> StatsEnvelope:
    """Usage over the calls created in a date range of at most 366 days; by default the 30
    Asia/Kolkata days ending today (or ending ``end_date`` when only it is given)."""
    if dates.start is None and dates.end is not None:
        dates = thirty_ist_days_ending(dates.end)
    else:
        default = last_30_ist_days(runtime.clock.now())
        # A start alone after today is refused here: DateRange keeps its bounds in order.
        dates = DateRange(dates.start or default.start, dates.end or default.end)
    assert dates.start is not None
    assert dates.end is not None
    # The end is exclusive: a bare end date's day ends at the next midnight.
    if dates.end - timedelta(microseconds=1) - dates.start > MAX_RANGE:
        raise InvalidRequest("The range from start_date to end_date must be at most 366 days.")
    async with runtime.db.read() as session:
        totals, days = await service.usage(
            session, principal.org_id, dates, digest=runtime.pair_digest
        )
    return StatsEnvelope(data=StatsOut.build(dates, totals, days))
