"""An organisation's pages: Overview, API keys, Calls and a call's page (SPEC §12).

Every page goes through ``org_page``: the signed-in user's membership and role are
checked on the server, and every read is scoped to the organisation in the URL through
the same services and repositories the API uses.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.audit import service as audit
from maskline.audit.service import Actor
from maskline.billing import wallet
from maskline.billing.schemas import BillingOut
from maskline.calls import filters, repository
from maskline.calls import service as calls
from maskline.calls.models import LIVE_STATUSES
from maskline.calls.schemas import CallOut
from maskline.errors import AppError, InvalidRequest, NotFound
from maskline.keys import service as keys
from maskline.kit.daterange import DateRange, parse_date_range
from maskline.kit.india import IST
from maskline.kit.pagination import MAX_PAGED_ROWS, Page
from maskline.orgs import service as orgs
from maskline.portal.charts import daily_bars
from maskline.portal.web import (
    ROLE_PAGES,
    OrgPage,
    PageError,
    clear_flash,
    client_address,
    form_of,
    fragment,
    not_found,
    org_page,
    read_flash,
    redirect,
    render,
    services,
    set_flash,
)
from maskline.recordings import service as recordings
from maskline.stats import service as stats
from maskline.stats.schemas import StatsOut
from maskline.webhooks import repository as webhook_log
from maskline.webhooks.schemas import DeliveryOut
from maskline.webhooks.timeline import events_of_call

router = APIRouter(prefix="/o/{org_id}", include_in_schema=False)

CALLS_PER_PAGE = 25
MAX_KEY_NAME = 100
MAX_RATE_LIMIT = 1_000_000
MAX_EXPIRY_DAYS = 3650


def _today(now: datetime) -> DateRange:
    day = now.astimezone(IST).date()
    start = datetime(day.year, day.month, day.day, tzinfo=IST)
    return DateRange(start, start + timedelta(days=1))


@router.get("")
async def overview(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "overview")
    runtime = services(request)
    now = runtime.clock.now()
    today = _today(now)
    assert today.start is not None
    week = DateRange(today.start - timedelta(days=6), today.end)
    async with runtime.db.read() as session:
        org = await orgs.get_org(session, org_id)
        billing = BillingOut.build(org, await wallet.get_wallet(session, org_id))
        totals, _days = await stats.usage(session, org_id, today, digest=runtime.pair_digest)
        week_totals, week_days = await stats.usage(
            session, org_id, week, digest=runtime.pair_digest
        )
    answer_rate = f"{100 * totals.answered / totals.calls:.0f}%" if totals.calls else "–"
    daily = StatsOut.build(week, week_totals, week_days).daily
    chart = daily_bars([(d.date, d.calls) for d in daily], unit="calls")
    return render(
        request,
        "overview.html",
        page.context(
            "overview", billing=billing, totals=totals, answer_rate=answer_rate, chart=chart
        ),
    )


async def _keys_page(
    request: Request, page: OrgPage, *, created: str | None = None, error: str | None = None
) -> Response:
    runtime = services(request)
    async with runtime.db.read() as session:
        rows = await keys.list_keys(session, page.org.id)
    context = page.context(
        "keys", keys=list(reversed(rows)), created=created, error=error, now=runtime.clock.now()
    )
    return render(request, "keys.html", context, status=400 if error else 200)


@router.get("/keys")
async def keys_page(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "keys")
    response = await _keys_page(request, page, created=read_flash(request))
    clear_flash(request, response, f"/o/{org_id}/keys")
    return response


def _optional_int(form: dict[str, str], name: str, low: int, high: int, label: str) -> int | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdecimal()) or not low <= int(raw) <= high:
        raise InvalidRequest(f"{label} must be a whole number from {low} to {high}.")
    return int(raw)


@router.post("/keys")
async def create_key(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "keys")
    form = await form_of(request)
    runtime = services(request)
    try:
        name = form.get("name", "").strip()
        if not name or len(name) > MAX_KEY_NAME or not name.isprintable():
            raise InvalidRequest(f"name must be 1 to {MAX_KEY_NAME} printable characters.")
        rate_limit = _optional_int(form, "rate_limit", 1, MAX_RATE_LIMIT, "rate limit")
        days = _optional_int(form, "expires_in", 1, MAX_EXPIRY_DAYS, "expiry (days)")
    except AppError as exc:
        return await _keys_page(request, page, error=exc.message)
    now = runtime.clock.now()
    expires_at = now + timedelta(days=days) if days is not None else None
    actor = Actor(page.user.email, client_address(request))

    async def change(session: AsyncSession) -> str:
        org = await orgs.get_org(session, org_id)
        row, raw = await keys.create_key(
            session, org, now=now, rate_limit=rate_limit, expires_at=expires_at, name=name
        )
        await audit.record(
            session, org_id, actor, "key.created", f"Key {row.prefix}… ({name})", now=now
        )
        return raw

    raw = await runtime.db.transaction(change)
    # POST/redirect/GET: the key rides to the next GET of the keys page (only), so a
    # reload of that page neither posts again nor shows the key again; it is stored
    # hashed and never shown again.
    path = f"/o/{org_id}/keys"
    response = redirect(request, path)
    set_flash(request, response, path, raw)
    return response


async def _scoped_key(request: Request, org_id: str, key_id: str) -> Any:
    runtime = services(request)
    async with runtime.db.read() as session:
        try:
            return await keys.find_key(session, org_id, key_id)
        except NotFound:
            raise not_found() from None


@router.get("/keys/{key_id}/revoke")
async def revoke_confirm(request: Request, org_id: str, key_id: str) -> Response:
    page = await org_page(request, org_id, "keys")
    key = await _scoped_key(request, org_id, key_id)
    return render(request, "revoke.html", page.context("keys", key=key))


@router.post("/keys/{key_id}/revoke")
async def revoke(request: Request, org_id: str, key_id: str) -> Response:
    page = await org_page(request, org_id, "keys")
    await form_of(request)
    runtime = services(request)
    key = await _scoped_key(request, org_id, key_id)
    now = runtime.clock.now()
    actor = Actor(page.user.email, client_address(request))

    async def change(session: AsyncSession) -> None:
        await keys.revoke_key(session, key_id, now=now, principals=runtime.principals)
        await audit.record(session, org_id, actor, "key.revoked", f"Key {key.prefix}…", now=now)

    await runtime.db.transaction(change)
    return redirect(request, f"/o/{org_id}/keys")


async def _calls(request: Request, org_id: str) -> dict[str, Any]:
    """The Calls page's rows for the query string's filters (the call-logs filters)."""
    query = request.query_params
    values = {k: query.get(k, "") for k in ("status", "party", "from", "to")}
    raw_page = query.get("page", "1")
    number = int(raw_page) if raw_page.isascii() and raw_page.isdecimal() else 1
    page = Page(page=max(1, min(number, MAX_PAGED_ROWS // CALLS_PER_PAGE)), per_page=CALLS_PER_PAGE)
    runtime = services(request)
    try:
        dates = parse_date_range(values["from"] or None, values["to"] or None)
        statuses = filters.statuses(values["status"] or None)
        party = filters.party(values["party"] or None)
    except AppError as exc:
        return {"filters": values, "error": exc.message, "calls": [], "meta": None}
    async with runtime.db.read() as session:
        found = await repository.page_of_calls(
            session, org_id, page, dates=dates, statuses=statuses, party=party
        )
    public_url = runtime.settings.public_url
    return {
        "filters": values,
        "calls": [CallOut.build(r, public_url=public_url) for r in found.rows],
        "meta": found.meta,
        "live_statuses": LIVE_STATUSES,
        "query": str(query),
    }


@router.get("/calls")
async def calls_page(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "calls")
    found = await _calls(request, org_id)
    status = 400 if found.get("error") else 200
    return render(request, "calls.html", page.context("calls", **found), status=status)


@router.get("/calls/rows")
async def calls_rows(request: Request, org_id: str) -> Response:
    """The Calls table's rows alone: what the page polls while a call on it is live."""
    page = await org_page(request, org_id, "calls")
    return fragment(
        request, "call_rows.html", page.context("calls", **await _calls(request, org_id))
    )


@router.get("/calls/{call_sid}")
async def call_page(request: Request, org_id: str, call_sid: str) -> Response:
    page = await org_page(request, org_id, "calls")
    runtime = services(request)
    async with runtime.db.read() as session:
        try:
            call = await calls.find_call(session, org_id, call_sid)
        except NotFound:
            raise PageError(404, "Call not found", "There is no such call here.") from None
        events = await events_of_call(session, org_id, call_sid)
        deliveries = (
            await webhook_log.page_of_deliveries(
                session, org_id, Page(page=1, per_page=50), call_sid=call.call_sid
            )
        ).rows
        recording = None
        if page.role in ROLE_PAGES["recordings"] and call.recording_status == "ready":
            recording = await recordings.ready_recording(
                session, org_id, call.call_sid, calls=runtime.recorded_calls
            )
    out = CallOut.build(call, public_url=runtime.settings.public_url)
    # The signed URL by path (same origin): what the page's media-src 'self' lets load.
    player = (
        recordings.describe(
            recording, signer=runtime.signer, public_url="", now=runtime.clock.now()
        )
        if recording is not None
        else None
    )
    return render(
        request,
        "call.html",
        page.context(
            "calls",
            call=out,
            events=events,
            live=out.status in LIVE_STATUSES,
            deliveries=[DeliveryOut.build(d) for d in deliveries],
            recording=player,
            can_replay=page.role in ROLE_PAGES["webhooks"],
        ),
    )


@router.get("/calls/{call_sid}/recording/delete")
async def recording_delete_confirm(request: Request, org_id: str, call_sid: str) -> Response:
    page = await org_page(request, org_id, "recordings")
    call = await _call_of(request, org_id, call_sid)
    context = page.context(
        "calls",
        title="Delete this recording?",
        text=f"The recording of call {call.call_sid} is deleted for good, and its links stop "
        "working at once. This cannot be undone.",
        action=f"/o/{org_id}/calls/{call.call_sid}/recording/delete",
        button="Delete recording",
        back=f"/o/{org_id}/calls/{call.call_sid}",
    )
    return render(request, "confirm.html", context)


@router.post("/calls/{call_sid}/recording/delete")
async def recording_delete(request: Request, org_id: str, call_sid: str) -> Response:
    """Delete the call's recording for good, as DELETE …/recording does."""
    await org_page(request, org_id, "recordings")
    await form_of(request)
    runtime = services(request)
    call = await _call_of(request, org_id, call_sid)
    try:
        await recordings.delete_for_good(
            runtime.db,
            org_id,
            call.call_sid,
            calls=runtime.recorded_calls,
            storage=runtime.storage,
            spool=runtime.spool,
            now=runtime.clock.now(),
        )
    except NotFound:
        raise PageError(404, "No recording", recordings.NOTHING_TO_DELETE) from None
    return redirect(request, f"/o/{org_id}/calls/{call.call_sid}")


async def _call_of(request: Request, org_id: str, call_sid: str) -> Any:
    runtime = services(request)
    async with runtime.db.read() as session:
        try:
            return await calls.find_call(session, org_id, call_sid)
        except NotFound:
            raise PageError(404, "Call not found", "There is no such call here.") from None
