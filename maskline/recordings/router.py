"""Recordings (SPEC §5): the resource behind the API key, and the signed file URL."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import select
from starlette.types import Message, Receive, Scope, Send

from maskline.errors import (
    AppError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RangeNotSatisfiable,
    RateLimited,
    Unauthorized,
    envelope,
    error_responses,
)
from maskline.keys.auth import KeyDep
from maskline.kit.query import reject_repeated_parameters
from maskline.kit.web import Services, process_services
from maskline.recordings import service
from maskline.recordings.calls import Calls
from maskline.recordings.models import Recording
from maskline.recordings.schemas import RecordingEnvelope
from maskline.recordings.signing import UrlSigner
from maskline.recordings.storage import Storage
from maskline.telephony.media.recorder import Spool

log = logging.getLogger("maskline.recordings")

router = APIRouter(prefix="/v1/masking", tags=["recordings"])


class RecordingsServices(Services, Protocol):
    """What the recording routes use of the running process."""

    signer: UrlSigner
    storage: Storage
    spool: Spool
    # The calls the recordings belong to, as recordings see them.
    recorded_calls: Calls


RuntimeDep = Annotated[RecordingsServices, Depends(process_services)]

PUBLIC: dict[str, Any] = {"security": []}


@router.get(
    "/calls/{call_sid}/recording",
    response_model=RecordingEnvelope,
    responses=error_responses(Unauthorized, NotFound, RateLimited),
)
async def get_recording(call_sid: str, principal: KeyDep, runtime: RuntimeDep) -> RecordingEnvelope:
    """A fresh signed URL of the call's MP3 (valid 1 hour); 404 until it is ready."""
    async with runtime.db.read() as session:
        recording = await service.ready_recording(
            session, principal.org_id, call_sid, calls=runtime.recorded_calls
        )
    return RecordingEnvelope(
        data=service.describe(
            recording,
            signer=runtime.signer,
            public_url=runtime.settings.public_url,
            now=runtime.clock.now(),
        )
    )


@router.delete(
    "/calls/{call_sid}/recording",
    status_code=204,
    response_class=Response,
    responses=error_responses(Unauthorized, NotFound, RateLimited),
)
async def delete_recording(call_sid: str, principal: KeyDep, runtime: RuntimeDep) -> Response:
    """Delete the recording for good; its signed URLs stop working at once."""
    await service.delete_for_good(
        runtime.db,
        principal.org_id,
        call_sid,
        calls=runtime.recorded_calls,
        storage=runtime.storage,
        spool=runtime.spool,
        now=runtime.clock.now(),
    )
    return Response(status_code=204)


class RecordingFile(FileResponse):
    """Starlette's FileResponse (Range, 206, multipart ranges), with its two error
    answers (an unsatisfiable or a malformed Range) in the SPEC §1 envelope."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        replaced = False

        async def send_enveloped(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] in (400, 416):
                replaced = True
                error: AppError = (
                    RangeNotSatisfiable()
                    if message["status"] == 416
                    else InvalidRequest("The Range header is not valid.")
                )
                body = json.dumps(envelope(error), separators=(",", ":")).encode()
                headers = [
                    (name, value)
                    for name, value in message["headers"]
                    if name.lower() == b"content-range"
                ]
                headers += [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send(
                    {"type": "http.response.start", "status": error.status_code, "headers": headers}
                )
                await send({"type": "http.response.body", "body": body})
                return
            if not replaced:
                await send(message)

        await super().__call__(scope, receive, send_enveloped)


@router.head("/recordings/{call_sid}.mp3", include_in_schema=False)
@router.get(
    "/recordings/{call_sid}.mp3",
    response_class=FileResponse,
    responses={
        200: {"content": {"audio/mpeg": {}}, "description": "The MP3."},
        206: {"content": {"audio/mpeg": {}}, "description": "The requested byte range."},
        **error_responses(Forbidden, NotFound, RangeNotSatisfiable, InvalidRequest),
    },
    openapi_extra=PUBLIC,
)
async def recording_file(
    request: Request,
    call_sid: str,
    runtime: RuntimeDep,
    # Unchecked here: anything but the right values is a 403 from the signer.
    expires: Annotated[str | None, Query()] = None,
    signature: Annotated[str | None, Query()] = None,
) -> Response:
    """The MP3 behind a signed URL: no API key; supports Range; 403 once expired."""
    reject_repeated_parameters(request)
    now = runtime.clock.now()
    if not runtime.signer.verify(service.media_path(call_sid), expires, signature, now=now):
        raise Forbidden("This recording URL is expired or not valid.")
    async with runtime.db.read() as session:
        recording = (
            await session.execute(select(Recording).where(Recording.call_sid == call_sid))
        ).scalar_one_or_none()
    path = None
    if recording is not None and recording.status == "ready" and recording.object_key:
        path = runtime.storage.local_path(recording.object_key)
    try:
        # Stat once here: a deletion racing this request is a 404, not a 500.
        stat = await asyncio.to_thread(os.stat, path) if path is not None else None
    except FileNotFoundError:
        stat = None
    if path is None or stat is None:
        raise NotFound(service.NOT_READY)
    remaining = max(0, int(expires or 0) - int(now.timestamp()))
    return RecordingFile(
        path,
        stat_result=stat,
        media_type="audio/mpeg",
        headers={"Cache-Control": f"private, max-age={remaining}"},
        content_disposition_type="inline",
        filename=f"{call_sid}.mp3",
    )
