"""Python client for the maskline number-masking voice API."""

from maskline_client._async import AsyncClient
from maskline_client._core import RetryPolicy
from maskline_client._sync import Client
from maskline_client.errors import (
    BY_CODE,
    Forbidden,
    IdempotencyConflict,
    InsufficientBalance,
    InternalError,
    InvalidNumbers,
    InvalidRequest,
    MasklineError,
    MethodNotAllowed,
    NoMaskedNumber,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    RateLimited,
    Unauthorized,
    WebhookVerificationError,
)
from maskline_client.models import Billing, Call, Delivery, Event, Invoice, Recording, Stats
from maskline_client.webhooks import verify_webhook

__all__ = [
    "BY_CODE",
    "AsyncClient",
    "Billing",
    "Call",
    "Client",
    "Delivery",
    "Event",
    "Forbidden",
    "IdempotencyConflict",
    "InsufficientBalance",
    "InternalError",
    "InvalidNumbers",
    "InvalidRequest",
    "Invoice",
    "MasklineError",
    "MethodNotAllowed",
    "NoMaskedNumber",
    "NotFound",
    "PayloadTooLarge",
    "RangeNotSatisfiable",
    "RateLimited",
    "Recording",
    "RetryPolicy",
    "Stats",
    "Unauthorized",
    "WebhookVerificationError",
    "verify_webhook",
]
