"""Operations endpoints (SPEC §11): liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from maskline.kit.migrate import current_revision, head_revision
from maskline.kit.web import RuntimeDep

router = APIRouter(tags=["operations"])
PUBLIC: dict[str, Any] = {"security": []}


@router.get("/healthz", openapi_extra=PUBLIC)
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz", openapi_extra=PUBLIC, responses={503: {"description": "Not ready"}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when the database answers and its schema is current; 503 naming the failing check."""
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
    ready = all(value == "ok" for value in checks.values()) and len(checks) == 2
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
