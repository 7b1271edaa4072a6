"""The audit log page (SPEC §12): shown to owners."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from maskline.audit import service as audit
from maskline.portal.web import org_page, render, services

router = APIRouter(prefix="/o/{org_id}/audit", include_in_schema=False)


@router.get("")
async def audit_page(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "audit")
    runtime = services(request)
    async with runtime.db.read() as session:
        events = await audit.latest(session, org_id)
    return render(request, "audit.html", page.context("audit", events=events))
