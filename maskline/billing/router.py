from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from maskline.billing import repository, wallet
from maskline.billing.pdf import invoice_pdf
from maskline.billing.schemas import BillingEnvelope, BillingOut, InvoiceList, InvoiceOut
from maskline.errors import (
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthorized,
    error_responses,
)
from maskline.keys.auth import KeyDep
from maskline.kit.query import PageDep
from maskline.kit.web import ServicesDep
from maskline.orgs import service as orgs

router = APIRouter(prefix="/v1/masking", tags=["billing"])


@router.get(
    "/billing",
    response_model=BillingEnvelope,
    responses=error_responses(Unauthorized, RateLimited),
)
async def get_billing(principal: KeyDep, runtime: ServicesDep) -> BillingEnvelope:
    """Current wallet balance, what is held for live calls, and what is available."""
    async with runtime.db.read() as session:
        org = await orgs.get_org(session, principal.org_id)
        row = await wallet.get_wallet(session, principal.org_id)
    return BillingEnvelope(data=BillingOut.build(org, row))


@router.get(
    "/billing/invoices",
    response_model=InvoiceList,
    responses=error_responses(InvalidRequest, Unauthorized, RateLimited),
)
async def list_invoices(principal: KeyDep, runtime: ServicesDep, page: PageDep) -> InvoiceList:
    """The organisation's GST invoices for wallet top-ups, newest first."""
    async with runtime.db.read() as session:
        found = await repository.page_of_invoices(session, principal.org_id, page)
    return InvoiceList(data=[InvoiceOut.build(r) for r in found.rows], meta=found.meta)


@router.get(
    "/billing/invoices/{invoice_id}.pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "The invoice as a PDF."},
        **error_responses(NotFound, Unauthorized, RateLimited),
    },
)
async def invoice_as_pdf(principal: KeyDep, runtime: ServicesDep, invoice_id: str) -> Response:
    """One of the organisation's GST invoices as a PDF (``invoice_id`` is its ``id``)."""
    async with runtime.db.read() as session:
        invoice = await repository.find_invoice(session, principal.org_id, invoice_id)
    if invoice is None:
        raise NotFound("No invoice with this id.")
    return Response(
        invoice_pdf(invoice),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{invoice.id}.pdf"'},
    )
