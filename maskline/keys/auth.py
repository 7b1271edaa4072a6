"""The Bearer-key dependency: key (401) first, then the request budget (429), then
the query string's shape (400) before the route's own parameters."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, Request

from maskline.errors import RateLimited, Unauthorized
from maskline.keys import service
from maskline.keys.principals import KeyGrant, Principal, PrincipalCache
from maskline.kit.query import reject_repeated_parameters
from maskline.kit.ratelimit import RateLimiter
from maskline.kit.web import STATE_BUDGET_HEADERS, Services, process_services

CALL_STATUS_BUDGET = "call_status"
DEFAULT_BUDGET = "default"


class AuthServices(Services, Protocol):
    """What authenticating a request uses of the running process."""

    limiter: RateLimiter
    principals: PrincipalCache


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <key>'.")
    return token.strip()


async def _principal(request: Request, runtime: AuthServices) -> Principal:
    """The key's principal: from this process's cache when it authenticated less than
    ``PRINCIPAL_TTL_SEC`` ago (no database read), else from one joined SELECT."""
    key_hash = service.key_hash_of(_bearer(request))
    grant = runtime.principals.get(key_hash)
    if grant is not None:
        return service.admit(grant, now=runtime.clock.now(), principals=runtime.principals)

    async def find() -> KeyGrant:
        async with runtime.db.read() as session:
            return await service.find_grant(session, key_hash)

    grant = await runtime.principals.load(key_hash, find)
    principal = service.admit(grant, now=runtime.clock.now(), principals=runtime.principals)
    # Only a key that authenticated is remembered: a refusal is always asked again.
    runtime.principals.remember(key_hash, grant)
    return principal


async def _authenticate(request: Request, runtime: AuthServices) -> Principal:
    try:
        return await _principal(request, runtime)
    except Unauthorized:
        # Guessing keys is limited per client address too (SPEC §7).
        client = request.client.host if request.client else "unknown"
        budget = await runtime.limiter.hit(
            f"auth-failure:{client}", runtime.settings.auth_failure_limit_per_minute
        )
        if not budget.allowed:
            raise RateLimited(
                "Too many failed authentication attempts from this address.",
                headers={"Retry-After": str(budget.retry_after_sec)},
            ) from None
        raise


def authenticated(budget_name: str = DEFAULT_BUDGET) -> object:
    """A dependency that authenticates the key and draws from its ``budget_name`` budget."""

    async def dependency(request: Request) -> Principal:
        runtime: AuthServices = await process_services(request)
        principal = await _authenticate(request, runtime)
        settings = runtime.settings
        if budget_name == CALL_STATUS_BUDGET:
            limit = settings.call_status_rate_limit_per_minute
        else:
            limit = principal.rate_limit or settings.rate_limit_per_minute
        budget = await runtime.limiter.hit(f"key:{principal.key_id}:{budget_name}", limit)
        setattr(request.state, STATE_BUDGET_HEADERS, budget.headers())
        if not budget.allowed:
            raise RateLimited(headers={"Retry-After": str(budget.retry_after_sec)})
        # Parameters are checked after the key and the budget (SPEC §1 order).
        reject_repeated_parameters(request)
        # At most one write of last_used_at per key per resolution from this process,
        # however many of its requests found the stored value stale at once.
        if principal.needs_touch:
            now = runtime.clock.now()
            if runtime.principals.claim_touch(principal.key_id, now=now):
                await runtime.db.transaction(
                    lambda session: service.touch(session, principal.key_id, now=now)
                )
        return principal

    return Depends(dependency)


KeyDep = Annotated[Principal, authenticated()]
CallStatusKeyDep = Annotated[Principal, authenticated(CALL_STATUS_BUDGET)]
