"""HTTP plumbing shared by every router: the runtime, request ids, budget headers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maskline.kit.ids import random_base62
from maskline.kit.logging import request_id_var
from maskline.runtime import Runtime

REQUEST_ID_HEADER = b"x-request-id"
STATE_BUDGET_HEADERS = "budget_headers"


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


class RequestContextMiddleware:
    """Gives each request an id (echoed in ``X-Request-Id``) and adds the key's budget headers.

    The budget headers are put on the request's state by the authentication
    dependency, so every authenticated response carries them, errors included.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{random_base62(16)}"
        token = request_id_var.set(request_id)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
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
            request_id_var.reset(token)
