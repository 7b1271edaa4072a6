"""HTTP plumbing shared by every router: the process's services, request ids, budget
headers, and the HTTP metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maskline.kit.clock import Clock
from maskline.kit.db import Database
from maskline.kit.ids import random_base62
from maskline.kit.logging import request_id_var
from maskline.settings import Settings

log = logging.getLogger("maskline.http")

REQUEST_ID_HEADER = b"x-request-id"
STATE_BUDGET_HEADERS = "budget_headers"
# Any other method a client sends is counted as "other", so labels stay few.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


# Told each answered request: method, route template, status and seconds taken.
ObserveRequest = Callable[[str, str, int, float], None]


class Services(Protocol):
    """What any route may use of the running process.

    The composition root (``maskline.runtime``) builds one object that provides it and
    puts it on the app's state. A router that needs more declares its own protocol on
    top of this one, naming just what it uses: the kit knows no domain, and no domain
    imports the runtime.
    """

    settings: Settings
    db: Database
    clock: Clock


async def process_services(request: Request) -> Any:
    """The object the composition root put on the app's state, for a dependency that
    reads it through its own protocol: ``Annotated[MyServices, Depends(process_services)]``
    (the runtime declares each such protocol as a base, so mypy checks it provides them).
    A coroutine, so that FastAPI runs it on the loop rather than in its thread pool."""
    return request.app.state.runtime


ServicesDep = Annotated[Services, Depends(process_services)]


def _finished(scope: Scope, status: int, seconds: float, observe: ObserveRequest | None) -> None:
    """Log the request (at debug) and count it under its route template (never the raw
    path: a call sid in a label would make a new series per call)."""
    if log.isEnabledFor(logging.DEBUG):
        query = scope.get("query_string", b"").decode("latin-1")
        target = f"{scope['path']}?{query}" if query else scope["path"]
        log.debug("%s %s %d %.1f ms", scope["method"], target, status, seconds * 1000)
    if observe is None:
        return
    route = scope.get("route")
    template = getattr(route, "path", None) or UNMATCHED_ROUTE
    method = scope["method"] if scope["method"] in METHODS else "other"
    observe(method, template, status, seconds)


class RequestContextMiddleware:
    """Gives each request an id (echoed in ``X-Request-Id``), adds the key's budget headers,
    and counts and times the request for the metrics.

    The budget headers are put on the request's state by the authentication
    dependency, so every authenticated response carries them, errors included.
    """

    def __init__(self, app: ASGIApp, *, observe: ObserveRequest | None = None) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        request_id = f"req_{random_base62(16)}"
        token = request_id_var.set(request_id)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                budget: dict[str, str] | None = state.get(STATE_BUDGET_HEADERS)
                present = {name.lower() for name, _ in headers}
                for name, value in (budget or {}).items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            _finished(scope, status, time.perf_counter() - started, self.observe)
            request_id_var.reset(token)
