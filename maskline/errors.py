"""Domain errors. One subclass per row of SPEC §1; one handler renders them."""

from __future__ import annotations

from maskline.schemas import ErrorEnvelope


class AppError(Exception):
    """An error with a fixed HTTP status, a stable code and a user-facing message."""

    status_code: int = 500
    code: str = "internal_error"
    default_message: str = "An internal error occurred."

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.headers = headers or {}
        super().__init__(self.message)


class InvalidNumbers(AppError):
    status_code = 400
    code = "invalid_numbers"
    default_message = "Party A and Party B must be valid 10-digit Indian mobile numbers."


class InvalidRequest(AppError):
    status_code = 400
    code = "invalid_request"
    default_message = "The request is not valid."


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"
    default_message = "Missing or invalid API key."


class InsufficientBalance(AppError):
    status_code = 402
    code = "insufficient_balance"
    default_message = "Insufficient balance. Please add funds to continue making calls."


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    default_message = "This URL is expired or not valid."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    default_message = "The requested resource was not found."


class MethodNotAllowed(AppError):
    status_code = 405
    code = "method_not_allowed"
    default_message = "This method is not allowed on this resource."


class IdempotencyConflict(AppError):
    status_code = 409
    code = "idempotency_conflict"
    default_message = "This Idempotency-Key was already used with a different request body."


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    default_message = "The request body is larger than 64 KiB."


class RangeNotSatisfiable(AppError):
    status_code = 416
    code = "range_not_satisfiable"
    default_message = "The requested range is outside the file."


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"
    default_message = "Rate limit exceeded. Please retry after the time in Retry-After."


class InternalError(AppError):
    status_code = 500
    code = "internal_error"
    default_message = "An internal error occurred."


class NoMaskedNumber(AppError):
    status_code = 503
    code = "no_masked_number"
    default_message = "No masked number is free for these parties. Please retry shortly."


class ConfigurationError(Exception):
    """The settings cannot run this process (e.g. a missing secret key)."""


class ConflictError(AppError):
    """An operator command that conflicts with stored state (CLI only)."""

    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with the stored state."


def envelope(error: AppError, *, request_id: str | None = None) -> dict[str, object]:
    """The SPEC §1 body of ``error``; a 500 names the request id (the log has the rest)."""
    body: dict[str, object] = {"code": error.code, "message": error.message}
    if error.status_code == 500:
        body["request_id"] = request_id
    return {"error": body}


def error_responses(*errors: type[AppError]) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for a route: each error's status, with the envelope schema."""
    responses: dict[int | str, dict[str, object]] = {}
    listed: tuple[type[AppError], ...] = (*errors, InternalError)
    for error in listed:
        entry = responses.setdefault(error.status_code, {"model": ErrorEnvelope, "description": ""})
        described = str(entry["description"])
        entry["description"] = f"{described}; `{error.code}`" if described else f"`{error.code}`"
    return responses


def list_errors(responses: dict[str, dict[str, object]], *errors: type[AppError]) -> None:
    """Add ``errors`` to an OpenAPI document's ``responses`` of one operation, beside what
    the route declared (a status already listed gains the code in its description)."""
    for error in errors:
        entry = responses.setdefault(
            str(error.status_code),
            {
                "description": "",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}
                },
            },
        )
        described = str(entry.get("description", ""))
        code = f"`{error.code}`"
        if code not in described:
            entry["description"] = f"{described}; {code}" if described else code
