"""The Webhooks page (SPEC §12, §6): the endpoint URL with §6's checks, the signing
secret revealed only on a POST and rotated (audited), a test event, and the delivery log
with its filters and replay."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.audit import service as audit
from maskline.audit.service import Actor
from maskline.errors import AppError, NotFound
from maskline.kit.pagination import MAX_PAGED_ROWS, Page
from maskline.portal.web import (
    OrgPage,
    clear_flash,
    client_address,
    form_of,
    not_found,
    org_page,
    read_flash,
    redirect,
    render,
    services,
    set_flash,
)
from maskline.webhooks import repository, service, ssrf
from maskline.webhooks.outbox import record_event
from maskline.webhooks.schemas import DeliveryOut

router = APIRouter(prefix="/o/{org_id}/webhooks", include_in_schema=False)

DELIVERIES_PER_PAGE = 25
STATUSES = ("pending", "succeeded", "failed", "paused")
EVENTS = (
    "call.initiated",
    "call.ringing",
    "call.answered",
    "call.bridged",
    "call.completed",
    "call.failed",
    "call.no-answer",
    "recording.ready",
    "webhook.test",
)
NO_URL = "Set a webhook URL first: the test event goes to it."
DONE = {
    "url": "Webhook URL saved.",
    "test": "Test event queued: it appears in the delivery log below.",
    "replay": "Delivery queued again.",
}


def _filters(request: Request) -> dict[str, str]:
    query = request.query_params
    found = {k: query.get(k, "").strip() for k in ("status", "event", "call_sid")}
    # A value not on the lists filters nothing rather than erring (the form offers the lists).
    if found["status"] not in STATUSES:
        found["status"] = ""
    if found["event"] not in EVENTS:
        found["event"] = ""
    found["call_sid"] = found["call_sid"][:36]
    return found


async def _webhooks_page(
    request: Request,
    page: OrgPage,
    *,
    error: str | None = None,
    status: int = 200,
    secret: str | None = None,
    url_typed: str | None = None,
) -> Response:
    runtime = services(request)
    org_id = page.org.id
    filters = _filters(request)
    raw_page = request.query_params.get("page", "1")
    number = int(raw_page) if raw_page.isascii() and raw_page.isdecimal() else 1
    paging = Page(
        page=max(1, min(number, MAX_PAGED_ROWS // DELIVERIES_PER_PAGE)),
        per_page=DELIVERIES_PER_PAGE,
    )
    async with runtime.db.read() as session:
        endpoint = await service.get_endpoint(session, org_id)
        found = await repository.page_of_deliveries(
            session,
            org_id,
            paging,
            status=filters["status"] or None,
            event=filters["event"] or None,
            call_sid=filters["call_sid"] or None,
        )
    now = runtime.clock.now()
    overlap = (
        endpoint is not None
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > now
    )
    context: dict[str, Any] = page.context(
        "webhooks",
        endpoint=endpoint,
        overlap_until=endpoint.previous_secret_expires_at if endpoint and overlap else None,
        url_value=url_typed if url_typed is not None else (endpoint.url if endpoint else "") or "",
        secret=secret,
        deliveries=[DeliveryOut.build(r) for r in found.rows],
        meta=found.meta,
        filters=filters,
        statuses=STATUSES,
        events=EVENTS,
        error=error,
        done=DONE.get(request.query_params.get("done", "")),
        query=request.query_params,
        can_replay=True,
    )
    return render(request, "webhooks.html", context, status=status)


@router.get("")
async def webhooks_page(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "webhooks")
    path = f"/o/{org_id}/webhooks"
    response = await _webhooks_page(request, page, secret=read_flash(request))
    clear_flash(request, response, path)
    return response


@router.post("/url")
async def set_url(request: Request, org_id: str) -> Response:
    """The endpoint URL, checked as SPEC §6 says (https, no userinfo, every address it
    resolves to global), as the CLI's ``webhook set`` checks it."""
    page = await org_page(request, org_id, "webhooks")
    form = await form_of(request)
    runtime = services(request)
    url = form.get("url", "").strip()
    try:
        await ssrf.resolve(url, allow_private=runtime.settings.allow_private_webhooks)
    except AppError as exc:
        return await _webhooks_page(request, page, error=exc.message, status=400, url_typed=url)
    now = runtime.clock.now()
    box = runtime.box

    async def change(session: AsyncSession) -> None:
        await service.set_url(session, org_id, url, box=box, now=now)

    await runtime.db.transaction(change)
    runtime.wake_worker()
    return redirect(request, f"/o/{org_id}/webhooks?done=url")


@router.post("/secret")
async def reveal_secret(request: Request, org_id: str) -> Response:
    """The signing secret, on this answer only (never in the page by default)."""
    page = await org_page(request, org_id, "webhooks")
    await form_of(request)
    runtime = services(request)
    async with runtime.db.read() as session:
        endpoint = await service.get_endpoint(session, org_id)
    if endpoint is None:
        raise not_found()
    return await _webhooks_page(request, page, secret=runtime.box.decrypt(endpoint.secret_enc))


@router.post("/secret/rotate")
async def rotate_secret(request: Request, org_id: str) -> Response:
    """A new secret (the old one signs beside it for 24 h), shown once after a redirect."""
    page = await org_page(request, org_id, "webhooks")
    await form_of(request)
    runtime = services(request)
    now = runtime.clock.now()
    actor = Actor(page.user.email, client_address(request))
    box = runtime.box

    async def change(session: AsyncSession) -> str:
        rotated = await service.rotate_secret(session, org_id, box=box, now=now)
        assert rotated.secret is not None
        detail = f"New secret {rotated.secret[: service.SHOWN_PREFIX_LENGTH]}…"
        await audit.record(session, org_id, actor, "webhook.secret_rotated", detail, now=now)
        return rotated.secret

    secret = await runtime.db.transaction(change)
    path = f"/o/{org_id}/webhooks"
    response = redirect(request, path)
    set_flash(request, response, path, secret)
    return response


@router.post("/test")
async def send_test(request: Request, org_id: str) -> Response:
    """A signed ``webhook.test`` event to the endpoint, delivered by the worker."""
    page = await org_page(request, org_id, "webhooks")
    await form_of(request)
    runtime = services(request)
    now = runtime.clock.now()

    async def queue(session: AsyncSession) -> bool:
        endpoint = await service.get_endpoint(session, org_id)
        if endpoint is None or not endpoint.url:
            return False
        await record_event(
            session,
            org_id=org_id,
            event="webhook.test",
            call_sid=None,
            sequence=0,
            data={"message": "This is a test event from maskline."},
            webhook_url=None,
            now=now,
        )
        return True

    if not await runtime.db.transaction(queue):
        return await _webhooks_page(request, page, error=NO_URL, status=400)
    runtime.wake_worker()
    return redirect(request, f"/o/{org_id}/webhooks?done=test")


@router.post("/deliveries/{delivery_id}/replay")
async def replay(request: Request, org_id: str, delivery_id: str) -> Response:
    await org_page(request, org_id, "webhooks")
    form = await form_of(request)
    runtime = services(request)
    now = runtime.clock.now()

    async def change(session: AsyncSession) -> None:
        await service.replay(session, org_id, delivery_id, now=now)

    try:
        await runtime.db.transaction(change)
    except NotFound:
        raise not_found() from None
    runtime.wake_worker()
    # Back to where the replay was asked (the log, or a call's page), on this site only.
    back = form.get("back", "")
    if not back.startswith(f"/o/{org_id}/") or "//" in back or "\\" in back:
        back = f"/o/{org_id}/webhooks"
    return redirect(request, back)
