"""Reading ``POST /v1/masking/calls`` bodies: strict types and the seed's messages (SPEC §1–3)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from maskline.errors import InvalidNumbers, InvalidRequest
from maskline.kit.bodies import read_json
from maskline.kit.phone import normalise_mobile
from maskline.webhooks.ssrf import check_url

SAME_PARTY = "Party A and Party B cannot be the same number."
MAX_METADATA_KEYS = 20
MAX_METADATA_BYTES = 1024
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True, slots=True)
class NewCall:
    party_a: str
    party_b: str
    max_duration_sec: int | None
    record: bool
    ring_timeout_sec: int
    webhook_url: str | None
    metadata: dict[str, str] | None

    def fingerprint(self) -> str:
        """Identifies the request after validation and normalisation (for Idempotency-Key)."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _party(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    number = normalise_mobile(value) if isinstance(value, str) else None
    if number is None:
        raise InvalidNumbers(f"{name} must be a 10-digit Indian mobile number.")
    return number


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}.")
    return value


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    message = (
        f"metadata must be an object of at most {MAX_METADATA_KEYS} string keys with string "
        f"values, {MAX_METADATA_BYTES} bytes in all."
    )
    if not isinstance(value, dict) or len(value) > MAX_METADATA_KEYS:
        raise InvalidRequest(message)
    size = 0
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidRequest(message)
        size += len(key.encode()) + len(item.encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidRequest(message)
    return dict(value)


def parse_new_call(
    raw: bytes, *, default_ring_timeout: int, allow_private_webhooks: bool
) -> NewCall:
    body = read_json(raw)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    party_a = _party(body, "party_a")
    party_b = _party(body, "party_b")
    if party_a == party_b:
        raise InvalidNumbers(SAME_PARTY)
    record = body.get("record", True)
    if record is None:
        record = True
    if not isinstance(record, bool):
        raise InvalidRequest("record must be true or false.")
    webhook_url = body.get("webhook_url")
    if webhook_url is not None:
        if not isinstance(webhook_url, str):
            raise InvalidRequest("webhook_url must be a string.")
        webhook_url = check_url(webhook_url, allow_private=allow_private_webhooks)
    ring_timeout = _integer(body, "ring_timeout_sec", 10, 120)
    return NewCall(
        party_a=party_a,
        party_b=party_b,
        max_duration_sec=_integer(body, "max_duration_sec", 10, 7200),
        record=record,
        ring_timeout_sec=default_ring_timeout if ring_timeout is None else ring_timeout,
        webhook_url=webhook_url,
        metadata=_metadata(body.get("metadata")),
    )


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY or not all(" " <= c <= "~" for c in value):
        raise InvalidRequest("Idempotency-Key must be 1 to 255 printable ASCII characters.")
    return value
