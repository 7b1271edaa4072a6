"""The Wallet page (SPEC §12): balance, ledger, Razorpay top-ups (SPEC §13), invoices
with their PDFs and the billing profile."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.audit.service import Actor
from maskline.billing import repository as billing
from maskline.billing import wallet
from maskline.billing.pdf import invoice_pdf
from maskline.billing.schemas import BillingOut
from maskline.errors import AppError, NotFound
from maskline.kit.pagination import Page
from maskline.orgs import service as orgs
from maskline.payments import service as payments
from maskline.payments.gateway import GatewayUnavailable, Payment, Razorpay
from maskline.portal.web import (
    SECURITY_HEADERS,
    OrgPage,
    PageError,
    client_address,
    form_of,
    not_found,
    org_page,
    redirect,
    render,
    services,
)

log = logging.getLogger("maskline.portal")

router = APIRouter(prefix="/o/{org_id}/wallet", include_in_schema=False)

NOT_CONFIGURED = "Payments are not configured on this installation: ask the operator to top up."


def actor_of(request: Request, page: OrgPage) -> Actor:
    return Actor(page.user.email, client_address(request))


async def _wallet_page(
    request: Request, page: OrgPage, *, error: str | None = None, status: int = 200
) -> Response:
    runtime = services(request)
    org_id = page.org.id
    now = runtime.clock.now()
    async with runtime.db.read() as session:
        org = await orgs.get_org(session, org_id)
        figures = BillingOut.build(org, await wallet.get_wallet(session, org_id))
        ledger = await billing.latest_ledger(session, org_id)
        invoices = (await billing.page_of_invoices(session, org_id, Page(page=1, per_page=50))).rows
        topups = await payments.latest_topups(session, org_id)
        notes = await payments.latest_credit_notes(session, org_id)
    context = page.context(
        "wallet",
        org=org,
        billing=figures,
        ledger=ledger,
        invoices=invoices,
        topups=[(t, payments.effective_status(t, now)) for t in topups],
        notes=notes,
        payments_on=runtime.razorpay is not None,
        not_configured=NOT_CONFIGURED,
        error=error,
        saved=request.query_params.get("saved") == "1",
    )
    return render(request, "wallet.html", context, status=status)


@router.get("")
async def wallet_page(request: Request, org_id: str) -> Response:
    return await _wallet_page(request, await org_page(request, org_id, "wallet"))


@router.post("/profile")
async def billing_profile(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "wallet")
    form = await form_of(request)
    runtime = services(request)

    async def change(session: AsyncSession) -> None:
        org = await orgs.get_org(session, org_id)
        await orgs.set_billing_profile(
            session,
            org,
            legal_name=form.get("legal_name", ""),
            address=form.get("address", ""),
            state_code=form.get("state_code", ""),
            gstin=form.get("gstin", ""),
        )

    try:
        await runtime.db.transaction(change)
    except AppError as exc:
        return await _wallet_page(request, page, error=exc.message, status=400)
    return redirect(request, f"/o/{org_id}/wallet?saved=1")


def _gateway(request: Request) -> Razorpay:
    gateway = services(request).razorpay
    if gateway is None:
        raise PageError(404, "Payments are not configured", NOT_CONFIGURED)
    return gateway


@router.post("/top-ups")
async def create_topup(request: Request, org_id: str) -> Response:
    """A Razorpay order for the amount typed plus GST, stored as ``created``; then its
    Checkout page."""
    page = await org_page(request, org_id, "wallet")
    form = await form_of(request)
    runtime = services(request)
    gateway = _gateway(request)
    try:
        amount = payments.check_amount(form.get("amount", ""))
    except AppError as exc:
        return await _wallet_page(request, page, error=exc.message, status=400)
    async with runtime.db.read() as session:
        org = await orgs.get_org(session, org_id)
    order_amount = amount + payments.tax_on(org, amount, runtime.settings).total_tax
    topup_id = payments.new_topup_id()
    try:
        order_id = await gateway.create_order(
            amount=order_amount, currency=payments.CURRENCY, receipt=topup_id
        )
    except GatewayUnavailable as exc:
        log.warning("razorpay order not created: %s", exc)
        return await _wallet_page(
            request,
            page,
            error="Razorpay could not be reached. Nothing was charged; try again in a minute.",
            status=503,
        )
    now = runtime.clock.now()
    actor = actor_of(request, page)

    async def store(session: AsyncSession) -> None:
        await payments.expire_orders(session, org_id, now=now)
        await payments.record_order(
            session,
            org_id,
            topup_id=topup_id,
            amount=amount,
            order_amount=order_amount,
            order_id=order_id,
            now=now,
            actor=actor,
            user_id=page.user.id,
        )

    await runtime.db.transaction(store)
    return redirect(request, f"/o/{org_id}/wallet/top-ups/{topup_id}")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _checkout_csp(gateway: Razorpay) -> str:
    """The portal's policy, opened for Razorpay's Checkout script and its frames."""
    origin = _origin(gateway.checkout_url)
    return (
        SECURITY_HEADERS["Content-Security-Policy"]
        .replace("script-src 'self'", f"script-src 'self' {origin}")
        .replace("connect-src 'self'", f"connect-src 'self' {origin} https://*.razorpay.com")
        .replace("img-src 'self' data:", f"img-src 'self' data: {origin} https://*.razorpay.com")
        .replace(
            "; frame-ancestors", f"; frame-src {origin} https://*.razorpay.com; frame-ancestors"
        )
    )


@router.get("/top-ups/{topup_id}")
async def topup_page(request: Request, org_id: str, topup_id: str) -> Response:
    page = await org_page(request, org_id, "wallet")
    runtime = services(request)
    gateway = _gateway(request)
    async with runtime.db.read() as session:
        try:
            topup = await payments.find_topup(session, org_id, topup_id)
        except NotFound:
            raise not_found() from None
        invoice = (
            await billing.find_invoice(session, org_id, topup.invoice_id)
            if topup.invoice_id
            else None
        )
    status = payments.effective_status(topup, runtime.clock.now())
    context = page.context(
        "wallet",
        topup=topup,
        status=status,
        invoice=invoice,
        key_id=gateway.key_id,
        checkout_url=gateway.checkout_url,
        callback_url=f"{runtime.settings.public_url}/o/{org_id}/wallet/top-ups/{topup_id}/callback",
        failed=request.query_params.get("failed") == "1",
    )
    response = render(request, "topup.html", context)
    if status == "created":
        response.headers["Content-Security-Policy"] = _checkout_csp(gateway)
    return response


@router.post("/top-ups/{topup_id}/callback")
async def checkout_callback(request: Request, org_id: str, topup_id: str) -> Response:
    """Where Checkout posts back (from Razorpay's page: no session, no CSRF token; the
    signature is what authenticates). A verified payment of this order is fetched from
    the Payments API, captured when only authorized, and credited once."""
    runtime = services(request)
    gateway = _gateway(request)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    async with runtime.db.read() as session:
        try:
            topup = await payments.find_topup(session, org_id, topup_id)
        except NotFound:
            raise not_found() from None
    back = f"/o/{org_id}/wallet/top-ups/{topup_id}"
    order_id = fields.get("razorpay_order_id", "")
    payment_id = fields.get("razorpay_payment_id", "")
    signature = fields.get("razorpay_signature", "")
    if not signature:
        # Checkout's failure post (error[code], error[description], …): nothing to credit.
        return redirect(request, f"{back}?failed=1")
    if order_id != topup.order_id or not gateway.callback_signature_ok(
        order_id, payment_id, signature
    ):
        raise PageError(
            400,
            "Payment not verified",
            "This payment's signature does not verify: nothing changed.",
        )
    try:
        payment = await gateway.fetch_payment(payment_id)
        if payment.order_id == topup.order_id and payment.status == "authorized":
            payment = await gateway.capture(payment)
    except GatewayUnavailable as exc:
        log.warning("razorpay payment %s not read: %s", payment_id, exc)
        raise PageError(
            503,
            "Razorpay could not be reached",
            "Your payment will be credited as soon as Razorpay confirms it. "
            "Reload this page in a minute.",
        ) from None
    if payment.order_id != topup.order_id:
        raise PageError(400, "Payment not verified", "This payment is not for this top-up.")
    if payment.status != "captured":
        return redirect(request, f"{back}?failed=1")
    now = runtime.clock.now()
    actor = Actor("razorpay checkout", client_address(request))
    settings = runtime.settings
    settled: Payment = payment

    async def settle(session: AsyncSession) -> payments.Outcome:
        return await payments.settle_payment(
            session, settled, settings=settings, now=now, actor=actor
        )

    await runtime.db.transaction(settle)
    return redirect(request, back)


invoices_router = APIRouter(prefix="/o/{org_id}/invoices", include_in_schema=False)


@invoices_router.get("/{invoice_id}.pdf")
async def invoice_download(request: Request, org_id: str, invoice_id: str) -> Response:
    await org_page(request, org_id, "wallet")
    runtime = services(request)
    async with runtime.db.read() as session:
        invoice = await billing.find_invoice(session, org_id, invoice_id)
    if invoice is None:
        raise not_found()
    return Response(
        invoice_pdf(invoice),
        media_type="application/pdf",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{invoice.id}.pdf"',
        },
    )
