"""The Usage page (SPEC §12, §3's stats for a date range with a daily chart, and the
call logs as CSV, streamed) and the Numbers page (the masked numbers serving the
organisation)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from maskline.calls import repository
from maskline.calls.schemas import call_data
from maskline.errors import AppError, InvalidRequest
from maskline.kit.daterange import (
    DateRange,
    last_30_ist_days,
    parse_date_range,
    thirty_ist_days_ending,
)
from maskline.kit.india import ist_date
from maskline.kit.pagination import Page
from maskline.numbers import service as numbers
from maskline.portal.charts import daily_bars
from maskline.portal.web import SECURITY_HEADERS, org_page, render, services
from maskline.stats import service as stats
from maskline.stats.router import MAX_RANGE
from maskline.stats.schemas import StatsOut

router = APIRouter(prefix="/o/{org_id}", include_in_schema=False)

CSV_CHUNK = 100
CSV_COLUMNS = (
    "call_sid",
    "status",
    "party_a",
    "party_b",
    "masked_number",
    "created_at",
    "answered_at",
    "bridged_at",
    "ended_at",
    "duration_sec",
    "talk_duration_sec",
    "bill_duration_sec",
    "price",
    "currency",
    "hangup_cause",
    "hangup_by",
    "recording_status",
)


def stats_range(start: str | None, end: str | None, *, now: datetime) -> DateRange:
    """The range as GET /v1/masking/stats reads it (SPEC §3): by default the 30
    Asia/Kolkata days ending today (or ending ``end_date``); at most 366 days."""
    dates = parse_date_range(start or None, end or None)
    if dates.start is None and dates.end is not None:
        dates = thirty_ist_days_ending(dates.end)
    else:
        default = last_30_ist_days(now)
        dates = DateRange(dates.start or default.start, dates.end or default.end)
    assert dates.start is not None
    assert dates.end is not None
    if dates.end - timedelta(microseconds=1) - dates.start > MAX_RANGE:
        raise InvalidRequest("The range from start_date to end_date must be at most 366 days.")
    return dates


@router.get("/usage")
async def usage_page(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "usage")
    runtime = services(request)
    query = request.query_params
    values = {k: query.get(k, "").strip() for k in ("start_date", "end_date")}
    try:
        dates = stats_range(values["start_date"], values["end_date"], now=runtime.clock.now())
    except AppError as exc:
        context = page.context("usage", values=values, error=exc.message, figures=None)
        return render(request, "usage.html", context, status=400)
    async with runtime.db.read() as session:
        totals, days = await stats.usage(session, org_id, dates, digest=runtime.pair_digest)
    figures = StatsOut.build(dates, totals, days)
    chart = daily_bars([(d.date, d.calls) for d in figures.daily], unit="calls")
    context = page.context(
        "usage",
        values=values,
        figures=figures,
        chart=chart,
        csv_query=f"start_date={figures.daily[0].date}&end_date={figures.daily[-1].date}",
    )
    return render(request, "usage.html", context)


@router.get("/usage/calls.csv")
async def calls_csv(request: Request, org_id: str) -> Response:
    """The call logs of the range as CSV, written as it is read (a page of rows at a
    time, each from its own short read), newest first."""
    await org_page(request, org_id, "usage")
    runtime = services(request)
    query = request.query_params
    try:
        dates = stats_range(
            query.get("start_date", "").strip(),
            query.get("end_date", "").strip(),
            now=runtime.clock.now(),
        )
    except AppError as exc:
        return Response(exc.message, status_code=400, media_type="text/plain")
    public_url = runtime.settings.public_url

    async def rows() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        page = Page(page=1, per_page=CSV_CHUNK)
        while True:
            async with runtime.db.read() as session:
                found = await repository.page_of_calls(
                    session,
                    org_id,
                    page,
                    dates=dates,
                    statuses=None,
                    party=None,
                )
            for call in found.rows:
                data = call_data(call, public_url=public_url)
                writer.writerow(["" if data[c] is None else data[c] for c in CSV_COLUMNS])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            # Past the first page by cursor: constant cost, and no 10,000-row limit.
            if found.meta.next_cursor is None:
                return
            page = Page(page=None, per_page=CSV_CHUNK, cursor=found.meta.next_cursor)

    assert dates.start is not None
    assert dates.end is not None
    last = dates.end - timedelta(microseconds=1)
    name = f"calls-{ist_date(dates.start)}-to-{ist_date(last)}.csv"
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/numbers")
async def numbers_page(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "numbers")
    runtime = services(request)
    async with runtime.db.read() as session:
        serving = await numbers.numbers_serving(session, org_id)
    return render(request, "numbers.html", page.context("numbers", numbers=serving))
