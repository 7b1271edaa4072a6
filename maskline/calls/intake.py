"""Reading ``POST /v1/masking/calls`` bodies: strict types and the seed's messages (SPEC §1–3)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from maskline.errors import AppError, InvalidNumbers, InvalidRequest
from maskline.kit.bodies import read_json
from maskline.kit.phone import normalise_mobile
from maskline.webhooks.ssrf import check_url

SAME_PARTY = "Party A and Party B cannot be the same number."
MOBILE = (
    "An Indian mobile number: 10 digits from 6-9, optionally after +91, 91 or 0; "
    "spaces, hyphens and parentheses are ignored."
)
MAX_METADATA_KEYS = 20
MAX_METADATA_BYTES = 1024
MAX_IDEMPOTENCY_KEY = 255
NEW_CALL_SCHEMA = "NewCall"  # its name among the document's schemas


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


Mobile = Annotated[str, Field(description=MOBILE)]
Seconds = Annotated[StrictInt, Field(ge=10)]


class NewCallBody(BaseModel):
    """A masked call: Party A is dialled first; when A answers, Party B is dialled and
    the two are bridged. Fields this API does not know are ignored."""

    # This model is both the validation and the document's schema. Fields are checked
    # in this order and the first fault is the answer, with the seed's message
    # (``invalid_numbers`` for the parties, ``invalid_request`` for the rest).
    model_config = ConfigDict(extra="ignore", strict=True, title=NEW_CALL_SCHEMA)

    party_a: Annotated[Mobile, Field(examples=["9876543210"])]
    party_b: Annotated[Mobile, Field(examples=["9123456789"])]
    record: bool | None = Field(default=True, description="Record the call (stereo MP3).")
    webhook_url: str | None = Field(
        default=None, description="Events of this call go here instead of the organisation's."
    )
    ring_timeout_sec: Annotated[Seconds, Field(le=120)] | None = Field(
        default=None, description="Per leg; the operator's default when absent."
    )
    max_duration_sec: Annotated[Seconds, Field(le=7200)] | None = None
    metadata: Annotated[dict[str, str], Field(max_length=MAX_METADATA_KEYS)] | None = Field(
        default=None,
        description=f"Echoed back; string values, {MAX_METADATA_BYTES} bytes in all.",
    )

    @field_validator("party_a", "party_b")
    @classmethod
    def _mobile(cls, value: str, info: ValidationInfo) -> str:
        number = normalise_mobile(value)
        if number is None:
            raise ValueError("not a mobile number")
        if info.field_name == "party_b" and number == info.data.get("party_a"):
            raise PydanticCustomError("same_party", SAME_PARTY)
        return number

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        allow_private = bool(info.context and info.context.get("allow_private_webhooks"))
        try:
            return check_url(value, allow_private=allow_private)
        except InvalidRequest as exc:
            raise PydanticCustomError("webhook_url", exc.message) from None

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            size = sum(len(key.encode()) + len(item.encode()) for key, item in value.items())
            if size > MAX_METADATA_BYTES:
                raise ValueError("metadata too large")
        return value


_METADATA = (
    f"metadata must be an object of at most {MAX_METADATA_KEYS} string keys with string "
    f"values, {MAX_METADATA_BYTES} bytes in all."
)
# The seed's message for any fault of a field (a check with a message of its own says it).
_MESSAGES = {
    "record": "record must be true or false.",
    "webhook_url": "webhook_url must be a string.",
    "ring_timeout_sec": "ring_timeout_sec must be an integer from 10 to 120.",
    "max_duration_sec": "max_duration_sec must be an integer from 10 to 7200.",
    "metadata": _METADATA,
}
_OWN_MESSAGE = frozenset({"same_party", "webhook_url"})
_PARTIES = frozenset({"party_a", "party_b"})


def _first_fault(exc: ValidationError) -> AppError:
    error = exc.errors(include_url=False)[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] in _OWN_MESSAGE:
        message = error["msg"]
    elif field in _PARTIES:
        message = f"{field} must be a 10-digit Indian mobile number."
    else:
        message = _MESSAGES.get(field, InvalidRequest.default_message)
    return InvalidNumbers(message) if field in _PARTIES else InvalidRequest(message)


def parse_new_call(
    raw: bytes, *, default_ring_timeout: int, allow_private_webhooks: bool
) -> NewCall:
    body = read_json(raw)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        parsed = NewCallBody.model_validate(
            body, context={"allow_private_webhooks": allow_private_webhooks}
        )
    except ValidationError as exc:
        raise _first_fault(exc) from None
    return NewCall(
        party_a=parsed.party_a,
        party_b=parsed.party_b,
        max_duration_sec=parsed.max_duration_sec,
        record=True if parsed.record is None else parsed.record,
        ring_timeout_sec=(
            default_ring_timeout if parsed.ring_timeout_sec is None else parsed.ring_timeout_sec
        ),
        webhook_url=parsed.webhook_url,
        metadata=parsed.metadata,
    )


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY or not all(" " <= c <= "~" for c in value):
        raise InvalidRequest("Idempotency-Key must be 1 to 255 printable ASCII characters.")
    return value
