"""Checking a webhook's signature (SPEC §6) before trusting its body."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks import WebhookVerificationError as _StandardError

from maskline_client.errors import WebhookVerificationError
from maskline_client.models import Event


def verify_webhook(raw_body: bytes | str, headers: Mapping[str, str], secret: str) -> Event:
    """The event in ``raw_body`` once its signature checks out: the Standard Webhooks
    headers (signature and timestamp tolerance) when present, else ``X-Edesy-Signature``
    (HMAC-SHA256 of the raw body keyed by the whole secret). Raises
    ``WebhookVerificationError`` otherwise."""
    body = raw_body.encode() if isinstance(raw_body, str) else raw_body
    lowered = {k.lower(): v for k, v in headers.items()}
    if "webhook-signature" in lowered:
        try:
            payload: Any = Webhook(secret).verify(body, lowered)
        except _StandardError as error:
            raise WebhookVerificationError(str(error)) from error
    elif "x-edesy-signature" in lowered:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, lowered["x-edesy-signature"].strip().lower()):
            raise WebhookVerificationError("X-Edesy-Signature does not match the body.")
        payload = json.loads(body)
    else:
        raise WebhookVerificationError("The request carries no webhook signature.")
    if not isinstance(payload, dict):
        raise WebhookVerificationError("The webhook body is not a JSON object.")
    return Event.model_validate(payload)
