"""The portal's routes, static files and error pages, added to the API's app."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from maskline.portal import account, audit, members, pages, signin, usage, wallet, webhooks
from maskline.portal.web import (
    HERE,
    SECURITY_HEADERS,
    PageError,
    SignInRequired,
    error_page,
    sign_in_redirect,
)


class _Static(StaticFiles):
    """The package's assets, with the portal's headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers += [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k != "Cache-Control"
                ]
                message["headers"] = headers
            await send(message)

        await super().__call__(scope, receive, with_headers)  # type: ignore[arg-type]


def install_portal(app: FastAPI) -> None:
    app.include_router(signin.router)
    app.include_router(pages.router)
    app.include_router(wallet.router)
    app.include_router(wallet.invoices_router)
    app.include_router(audit.router)
    app.include_router(members.router)
    app.include_router(account.router)
    app.include_router(webhooks.router)
    app.include_router(usage.router)
    app.mount("/static", _Static(directory=HERE / "static"), name="static")
    app.add_exception_handler(PageError, error_page)
    app.add_exception_handler(SignInRequired, sign_in_redirect)
