"""Operations endpoints (SPEC §11): liveness, readiness and metrics."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Header, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from maskline.errors import Forbidden, error_responses
from maskline.kit.migrate import current_revision, head_revision
from maskline.kit.web import Services, process_services
from maskline.ops.metrics import Metrics, WriterFigures
from maskline.ops.repository import read_figures
from maskline.telephony.carrier import Carrier

router = APIRouter(tags=["operations"])


class OpsServices(Services, Protocol):
    """What the operations routes use of the running process."""

    metrics: Metrics

    @property
    def carriers(self) -> Mapping[str, Carrier] | None:
        """The call engine's carriers; None in a process that runs no engine."""
        ...


RuntimeDep = Annotated[OpsServices, Depends(process_services)]
PUBLIC: dict[str, Any] = {"security": []}


@router.get("/healthz", openapi_extra=PUBLIC)
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


def _carrier_check(runtime: OpsServices) -> str | None:
    """``ok``, or which carriers are not ready; None in a process that runs no engine."""
    if runtime.carriers is None:
        return None
    waiting = [name for name, carrier in runtime.carriers.items() if not carrier.ready]
    return f"not ready ({', '.join(waiting)})" if waiting else "ok"


@router.get("/readyz", openapi_extra=PUBLIC, responses={503: {"description": "Not ready"}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when the database answers, its schema is current and (in a process that runs
    the call engine) the carrier is ready; 503 naming the failing check."""
    checks: dict[str, str] = {}
    try:
        async with runtime.db.read() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
        revision = await current_revision(runtime.db)
        checks["migrations"] = "ok" if revision == head_revision() else f"behind ({revision})"
    except OSError as exc:
        checks["database"] = f"unreachable ({exc.__class__.__name__})"
    except Exception as exc:
        checks.setdefault("database", f"error ({exc.__class__.__name__})")
    checks.setdefault("migrations", "unknown")
    if (carrier := _carrier_check(runtime)) is not None:
        checks["carrier"] = carrier
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


def _token_matches(authorization: str | None, token: str) -> bool:
    scheme, _, presented = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


@router.get(
    "/metrics",
    openapi_extra=PUBLIC,
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Metrics"},
        **error_responses(Forbidden),
    },
)
async def metrics(
    runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus text format. With ``MASKLINE_METRICS_TOKEN`` set it needs
    ``Authorization: Bearer <token>``; 403 ``forbidden`` otherwise."""
    token = runtime.settings.metrics_token
    if token and not _token_matches(authorization, token):
        raise Forbidden("The metrics token is missing or wrong.")
    async with runtime.db.read() as session:
        figures = await read_figures(session, now=runtime.clock.now())
    carriers = None if runtime.carriers is None else runtime.carriers.values()
    writer = runtime.db.writer
    counts = WriterFigures(writer.batches, writer.units, writer.reruns)
    return Response(
        runtime.metrics.exposition(figures, carriers, counts), media_type=CONTENT_TYPE_LATEST
    )
