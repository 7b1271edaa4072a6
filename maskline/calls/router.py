from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.calls import filters, repository, service, tally
from maskline.calls.idempotency import InFlight
from maskline.calls.intake import (
    NEW_CALL_SCHEMA,
    NewCallBody,
    check_idempotency_key,
    parse_new_call,
)
from maskline.calls.models import TERMINAL_STATUSES
from maskline.calls.schemas import CallEnvelope, CallList, CallOut
from maskline.errors import (
    IdempotencyConflict,
    InsufficientBalance,
    InvalidNumbers,
    InvalidRequest,
    NoMaskedNumber,
    NotFound,
    RateLimited,
    Unauthorized,
    error_responses,
)
from maskline.keys.auth import CallStatusKeyDep, KeyDep
from maskline.kit.crypto import KeyedDigest
from maskline.kit.notify import Broadcast
from maskline.kit.query import DateRangeDep, PageDep
from maskline.kit.web import Services, process_services
from maskline.webhooks import ssrf

router = APIRouter(prefix="/v1/masking", tags=["calls"])


class CallsServices(Services, Protocol):
    """What the call routes use of the running process."""

    # Requests of this process placing a call under an Idempotency-Key right now.
    idempotency: InFlight
    # Fired whenever any process commits call events: what the hang-up API waits on.
    call_events: Broadcast
    # Digests of A–B pairs for the stats (never the numbers).
    pair_digest: KeyedDigest

    def wake_engine(self) -> None: ...

    def wake_hangups(self) -> None: ...

    def wake_worker(self) -> None: ...


RuntimeDep = Annotated[CallsServices, Depends(process_services)]

HANGUP_WAIT_SEC = 10.0
HANGUP_RECHECK_SEC = 1.0

# The body is read by ``parse_new_call`` (the seed's messages, not FastAPI's 422); the
# document shows the same model, added to the components when the document is built.
BODY_MODELS = (NewCallBody,)
# The POST's only FastAPI parameters are the request and the key (each parameter
# FastAPI solves costs a POST CPU of its own: about 30 µs for the header and the
# runtime): the document names the body and the Idempotency-Key header itself.
CREATE_CALL_OPENAPI = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Idempotency-Key"},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{NEW_CALL_SCHEMA}"}}
        },
    },
}


@router.post(
    "/calls",
    status_code=201,
    response_model=CallEnvelope,
    responses=error_responses(
        InvalidNumbers,
        InvalidRequest,
        Unauthorized,
        InsufficientBalance,
        IdempotencyConflict,
        RateLimited,
        NoMaskedNumber,
    ),
    openapi_extra=CREATE_CALL_OPENAPI,
)
async def create_call(request: Request, principal: KeyDep) -> Response:
    """Dial Party A; when A answers, dial Party B and bridge them. Returns at once."""
    runtime: CallsServices = await process_services(request)
    idempotency_key = request.headers.get("idempotency-key")
    settings = runtime.settings
    new_call = parse_new_call(
        await request.body(),
        default_ring_timeout=settings.ring_timeout_sec,
        allow_private_webhooks=settings.allow_private_webhooks,
    )
    key = check_idempotency_key(idempotency_key)
    if new_call.webhook_url is not None:
        await ssrf.resolve(new_call.webhook_url, allow_private=settings.allow_private_webhooks)
    wait_sec = settings.idempotency_wait_sec
    pair_key = runtime.pair_digest(tally.pair_text(new_call.party_a, new_call.party_b))

    async def accept(session: AsyncSession, *, lease_now: bool = False) -> service.Accepted:
        return await service.create_call(
            session,
            principal.org_id,
            principal.terms,
            new_call,
            default_carrier=settings.carrier,
            public_url=settings.public_url,
            now=runtime.clock.now(),
            pair_key=pair_key,
            idempotency_key=key,
            idempotency_wait_sec=wait_sec,
            lease_now=lease_now,
        )

    async with runtime.idempotency.turn(principal.org_id, key, wait_sec=wait_sec):
        try:
            accepted = await runtime.db.transaction(accept)
        except service.LeaseAlone:
            accepted = await runtime.db.transaction(functools.partial(accept, lease_now=True))
    stored = accepted.response()
    # Once committed: an aborted run woke nobody.
    runtime.wake_engine()
    runtime.wake_worker()
    return Response(stored.body, status_code=stored.status_code, media_type="application/json")


async def _call_out(runtime: CallsServices, org_id: str, call_sid: str) -> CallOut:
    async with runtime.db.read() as session:
        call = await service.find_call(session, org_id, call_sid)
    return CallOut.build(call, public_url=runtime.settings.public_url)


@router.get(
    "/calls/{call_sid}",
    response_model=CallEnvelope,
    responses=error_responses(Unauthorized, NotFound, RateLimited),
)
async def get_call(call_sid: str, principal: CallStatusKeyDep, runtime: RuntimeDep) -> CallEnvelope:
    """The call's current state. Poll every 2–3 s until it is terminal, or use webhooks."""
    return CallEnvelope(data=await _call_out(runtime, principal.org_id, call_sid))


@router.post(
    "/calls/{call_sid}/hangup",
    response_model=CallEnvelope,
    responses=error_responses(Unauthorized, NotFound, RateLimited),
)
async def hangup_call(call_sid: str, principal: KeyDep, runtime: RuntimeDep) -> CallEnvelope:
    """End a live call now (bridged time is billed as usual). Idempotent on ended calls."""

    async def ask(session: AsyncSession) -> bool:
        return await service.request_hangup(
            session,
            principal.org_id,
            call_sid,
            public_url=runtime.settings.public_url,
            now=runtime.clock.now(),
        )

    engine_must_act = await runtime.db.transaction(ask)
    if not engine_must_act:
        return CallEnvelope(data=await _call_out(runtime, principal.org_id, call_sid))
    runtime.wake_hangups()
    # The engine that ends the call commits its events and wakes every process
    # (ARCHITECTURE §3): the call is read again on each such wake-up, and at least once
    # a second in case one is missed (or does not cross processes, as on SQLite).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANGUP_WAIT_SEC
    while True:
        changed = runtime.call_events.ticket()
        current = await _call_out(runtime, principal.org_id, call_sid)
        remaining = deadline - loop.time()
        if current.status in TERMINAL_STATUSES or remaining <= 0:
            return CallEnvelope(data=current)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(remaining, HANGUP_RECHECK_SEC))


@router.get(
    "/call-logs",
    response_model=CallList,
    responses=error_responses(InvalidRequest, Unauthorized, RateLimited),
)
async def call_logs(
    principal: KeyDep,
    runtime: RuntimeDep,
    page: PageDep,
    dates: DateRangeDep,
    status: Annotated[
        str | None, Query(max_length=100, description="One or more, comma-separated.")
    ] = None,
    party: Annotated[str | None, Query(max_length=40, description="Party A or B.")] = None,
) -> Response:
    """Call history, newest first, with filters on status, creation date and party."""
    async with runtime.db.read() as session:
        found = await repository.page_of_calls(
            session,
            principal.org_id,
            page,
            dates=dates,
            statuses=filters.statuses(status),
            party=filters.party(party),
        )
    public_url = runtime.settings.public_url
    listed = CallList(
        data=[CallOut.build(r, public_url=public_url) for r in found.rows], meta=found.meta
    )
    # Serialised once: the model is built from the rows, not validated again.
    return Response(listed.model_dump_json(), media_type="application/json")
