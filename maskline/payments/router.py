"""Razorpay's webhooks (SPEC §13): ``POST /v1/payments/razorpay/webhook``."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.audit.service import Actor
from maskline.errors import InvalidRequest, error_responses
from maskline.kit.web import Services, process_services
from maskline.payments import service
from maskline.payments.gateway import Payment, Razorpay
from maskline.payments.models import CreditNote
from maskline.payments.schemas import RazorpayEvent, WebhookAck, WebhookResult

log = logging.getLogger("maskline.payments")

router = APIRouter(prefix="/v1/payments", tags=["payments"])

PUBLIC: dict[str, Any] = {"security": []}
UNVERIFIED = "X-Razorpay-Signature does not match the body."
PAYMENT_EVENTS = ("payment.captured", "order.paid")


class PaymentsServices(Services, Protocol):
    """What the payment routes use of the running process."""

    razorpay: Razorpay | None


RuntimeDep = Annotated[PaymentsServices, Depends(process_services)]


def razorpay_actor(request: Request) -> Actor:
    return Actor("razorpay", request.client.host if request.client else None)


@router.post(
    "/razorpay/webhook",
    response_model=WebhookAck,
    openapi_extra=PUBLIC,
    responses=error_responses(InvalidRequest),
)
async def razorpay_webhook(request: Request, runtime: RuntimeDep) -> WebhookAck:
    """Razorpay's events, verified by ``X-Razorpay-Signature`` (hex HMAC-SHA256 of the raw
    body under the webhook secret). ``payment.captured`` and ``order.paid`` credit the
    top-up once, ``refund.processed`` debits its share and issues a credit note; any
    other event is acknowledged and ignored. An unverified body is 400 and changes
    nothing."""
    body = await request.body()
    gateway = runtime.razorpay
    signature = request.headers.get("x-razorpay-signature", "")
    if gateway is None or not gateway.webhook_signature_ok(body, signature):
        raise InvalidRequest(UNVERIFIED)
    try:
        event = RazorpayEvent.model_validate_json(body)
    except ValidationError:
        raise InvalidRequest("The webhook body is not a Razorpay event.") from None
    actor = razorpay_actor(request)
    now = runtime.clock.now()
    try:
        if event.event in PAYMENT_EVENTS and event.payload.payment is not None:
            payment = Payment.of(event.payload.payment.entity)
            settings = runtime.settings

            async def settle(session: AsyncSession) -> service.Outcome:
                return await service.settle_payment(
                    session, payment, settings=settings, now=now, actor=actor
                )

            outcome = await runtime.db.transaction(settle)
            return WebhookAck(data=WebhookResult(outcome=outcome.value))
        if event.event == "refund.processed" and event.payload.refund is not None:
            entity = event.payload.refund.entity
            refund = service.Refund(
                id=str(entity["id"]),
                payment_id=str(entity["payment_id"]),
                amount=int(entity["amount"]),
                currency=str(entity["currency"]),
            )

            async def process(session: AsyncSession) -> CreditNote:
                return await service.process_refund(session, refund, now=now, actor=actor)

            try:
                await runtime.db.transaction(process)
            except service.RefundIgnored as ignored:
                log.info("razorpay refund ignored: %s", ignored)
                return WebhookAck(data=WebhookResult(outcome="ignored"))
            return WebhookAck(data=WebhookResult(outcome="refunded"))
    except (KeyError, TypeError, ValueError):
        raise InvalidRequest("The webhook body is not a Razorpay event.") from None
    return WebhookAck(data=WebhookResult(outcome="ignored"))
