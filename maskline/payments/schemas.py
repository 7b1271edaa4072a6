"""Wire shapes of Razorpay's webhooks as far as we read them, and our answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Entity(_Loose):
    entity: dict[str, Any]


class _Payload(_Loose):
    payment: _Entity | None = None
    order: _Entity | None = None
    refund: _Entity | None = None


class RazorpayEvent(_Loose):
    """A webhook body: ``event`` and the entities it carries."""

    event: str
    payload: _Payload


class WebhookResult(BaseModel):
    outcome: str


class WebhookAck(BaseModel):
    data: WebhookResult
