"""One exception family for every error the API answers (SPEC §1)."""

from __future__ import annotations

import httpx


class MasklineError(Exception):
    """An error answer of the API: its HTTP status, SPEC §1 ``code``, message and request id."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class InvalidNumbers(MasklineError):
    pass


class InvalidRequest(MasklineError):
    pass


class Unauthorized(MasklineError):
    pass


class InsufficientBalance(MasklineError):
    pass


class Forbidden(MasklineError):
    pass


class NotFound(MasklineError):
    pass


class MethodNotAllowed(MasklineError):
    pass


class IdempotencyConflict(MasklineError):
    pass


class PayloadTooLarge(MasklineError):
    pass


class RangeNotSatisfiable(MasklineError):
    pass


class RateLimited(MasklineError):
    pass


class InternalError(MasklineError):
    pass


class NoMaskedNumber(MasklineError):
    pass


class WebhookVerificationError(Exception):
    """A webhook whose signature or timestamp does not check out."""


BY_CODE: dict[str, type[MasklineError]] = {
    "invalid_numbers": InvalidNumbers,
    "invalid_request": InvalidRequest,
    "unauthorized": Unauthorized,
    "insufficient_balance": InsufficientBalance,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "method_not_allowed": MethodNotAllowed,
    "idempotency_conflict": IdempotencyConflict,
    "payload_too_large": PayloadTooLarge,
    "range_not_satisfiable": RangeNotSatisfiable,
    "rate_limited": RateLimited,
    "internal_error": InternalError,
    "no_masked_number": NoMaskedNumber,
}


def error_from(response: httpx.Response) -> MasklineError:
    """The exception for an error ``response``; an unknown code still gives a ``MasklineError``."""
    code, message, request_id = "unknown_error", response.reason_phrase, None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code", code))
        message = str(error.get("message", message))
        found = body.get("request_id") or error.get("request_id")
        request_id = str(found) if found else None
    request_id = request_id or response.headers.get("x-request-id")
    return BY_CODE.get(code, MasklineError)(response.status_code, code, message, request_id)
