"""The Account page (SPEC §12): the signed-in user's name, password and active sessions.
A password change ends every other session; any one session can be signed out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.accounts import passwords, sessions
from maskline.accounts import service as accounts
from maskline.errors import AppError, InvalidRequest
from maskline.portal.web import (
    OrgPage,
    clear_session_cookie,
    form_of,
    not_found,
    org_page,
    redirect,
    render,
    services,
)

router = APIRouter(prefix="/o/{org_id}/account", include_in_schema=False)

NOT_THE_CURRENT_ONE = "The current password is not right."
SAVED = {
    "name": "Name saved.",
    "password": "Password changed: every other session is signed out.",
    "session": "That session is signed out.",
}


async def _account_page(
    request: Request, page: OrgPage, *, error: str | None = None, status: int = 200
) -> Response:
    runtime = services(request)
    async with runtime.db.read() as session:
        live = await sessions.of_user(session, page.user.id, now=runtime.clock.now())
    context = page.context(
        "account",
        sessions=live,
        this_session=page.current.session_id,
        error=error,
        saved=SAVED.get(request.query_params.get("saved", "")),
    )
    return render(request, "account.html", context, status=status)


@router.get("")
async def account_page(request: Request, org_id: str) -> Response:
    return await _account_page(request, await org_page(request, org_id, "account"))


@router.post("/name")
async def change_name(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "account")
    form = await form_of(request)
    user_id = page.user.id

    async def change(session: AsyncSession) -> str:
        return await accounts.set_name(session, user_id, form.get("name", ""))

    try:
        await services(request).db.transaction(change)
    except AppError as exc:
        return await _account_page(request, page, error=exc.message, status=400)
    return redirect(request, f"/o/{org_id}/account?saved=name")


@router.post("/password")
async def change_password(request: Request, org_id: str) -> Response:
    """A new password (the current one first, when the account has one); every other
    session of the account ends, this one stays."""
    page = await org_page(request, org_id, "account")
    form = await form_of(request)
    runtime = services(request)
    stored = page.user.password_hash
    try:
        if stored is not None and not await passwords.verify_password(
            stored, form.get("current", "")
        ):
            raise InvalidRequest(NOT_THE_CURRENT_ONE)
        password_hash = await passwords.hash_password(form.get("password", ""))
    except AppError as exc:
        return await _account_page(request, page, error=exc.message, status=400)
    user_id, keep = page.user.id, page.current.session_id

    async def change(session: AsyncSession) -> None:
        await accounts.set_password(session, user_id, password_hash)
        await sessions.end_all(session, user_id, but=keep)

    await runtime.db.transaction(change)
    return redirect(request, f"/o/{org_id}/account?saved=password")


@router.post("/sessions/{session_id}/end")
async def end_session(request: Request, org_id: str, session_id: str) -> Response:
    """Sign one of the user's own sessions out (this one too: then to the sign-in page)."""
    page = await org_page(request, org_id, "account")
    await form_of(request)
    user_id = page.user.id

    async def change(session: AsyncSession) -> bool:
        return await sessions.end_of_user(session, user_id, session_id)

    if not await services(request).db.transaction(change):
        raise not_found()
    if session_id == page.current.session_id:
        response = redirect(request, "/sign-in")
        clear_session_cookie(request, response)
        return response
    return redirect(request, f"/o/{org_id}/account?saved=session")
