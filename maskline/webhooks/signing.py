"""Webhook signatures (SPEC §6): the seed's ``X-Edesy-Signature`` and Standard Webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - the public prefix of every secret


def edesy_signature(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of the raw body; the key is the whole secret string."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>`` over ``id.timestamp.body``; the key is the base64 after ``whsec_``."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    *, secrets: list[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Headers for one attempt. ``secrets`` is newest first; during a rotation the old
    secret still makes ``X-Edesy-Signature`` and both sign ``webhook-signature``."""
    return {
        "Content-Type": "application/json",
        "X-Edesy-Signature": edesy_signature(secrets[-1], body),
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_signature(s, msg_id, timestamp, body) for s in secrets
        ),
    }
