"""Razorpay's Orders and Payments APIs through the official ``razorpay`` package.

The package is synchronous (on ``requests``): every call runs in a thread, off the
event loop. ``MASKLINE_RAZORPAY_API_URL`` is its ``base_url`` (tests point it at a
local stand-in); there is no other path.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import razorpay
import requests
from razorpay.errors import (
    BadRequestError,
    GatewayError,
    ServerError,
    SignatureVerificationError,
)

from maskline.settings import Settings

# Seconds a call to Razorpay may take (connect, read).
TIMEOUT = (5, 20)


class GatewayUnavailable(Exception):
    """Razorpay did not answer, or refused the request: the page says so."""


@dataclass(frozen=True, slots=True)
class Payment:
    """What we read of a Razorpay payment entity."""

    id: str
    order_id: str | None
    status: str
    amount: int
    currency: str

    @classmethod
    def of(cls, entity: dict[str, Any]) -> Payment:
        return cls(
            id=str(entity["id"]),
            order_id=entity.get("order_id"),
            status=str(entity["status"]),
            amount=int(entity["amount"]),
            currency=str(entity["currency"]),
        )


class Razorpay:
    """One client per process, built in the lifespan when the credentials are set."""

    def __init__(self, settings: Settings) -> None:
        assert settings.razorpay_key_id
        assert settings.razorpay_key_secret
        self.key_id = settings.razorpay_key_id
        self._secret = settings.razorpay_key_secret
        self.webhook_secret = settings.razorpay_webhook_secret
        self.checkout_url = settings.razorpay_checkout_url
        self._client = razorpay.Client(
            auth=(self.key_id, self._secret), base_url=settings.razorpay_api_url
        )
        self._client.set_app_details({"title": "maskline"})

    def callback_signature_ok(self, order_id: str, payment_id: str, signature: str) -> bool:
        """SPEC §13: hex HMAC-SHA256 of ``order_id|payment_id`` under the key secret."""
        try:
            return bool(
                self._client.utility.verify_payment_signature(
                    {
                        "razorpay_order_id": order_id,
                        "razorpay_payment_id": payment_id,
                        "razorpay_signature": signature,
                    }
                )
            )
        except SignatureVerificationError:
            return False

    def webhook_signature_ok(self, body: bytes, signature: str) -> bool:
        """``X-Razorpay-Signature``: hex HMAC-SHA256 of the raw body, webhook secret."""
        if not self.webhook_secret:
            return False
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        try:
            return bool(
                self._client.utility.verify_webhook_signature(text, signature, self.webhook_secret)
            )
        except SignatureVerificationError:
            return False

    async def _call(self, method: Any, *args: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await asyncio.to_thread(method, *args, timeout=TIMEOUT)
        except (
            requests.RequestException,
            BadRequestError,
            GatewayError,
            ServerError,
            ValueError,
        ) as exc:
            raise GatewayUnavailable(type(exc).__name__) from None
        return result

    async def create_order(self, *, amount: int, currency: str, receipt: str) -> str:
        """A new order; its id."""
        order = await self._call(
            self._client.order.create,
            {"amount": amount, "currency": currency, "receipt": receipt, "payment_capture": 1},
        )
        return str(order["id"])

    async def fetch_payment(self, payment_id: str) -> Payment:
        return Payment.of(await self._call(self._client.payment.fetch, payment_id))

    async def capture(self, payment: Payment) -> Payment:
        """Capture an ``authorized`` payment for its whole amount."""
        captured = await self._call(
            self._client.payment.capture, payment.id, payment.amount, {"currency": payment.currency}
        )
        return Payment.of(captured)
