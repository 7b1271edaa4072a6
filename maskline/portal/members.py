"""The Members page (SPEC §12): owners invite by email (a mailed one-time sign-in
link), change roles and remove members; the last owner is never removed or demoted.
Every change goes to the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.accounts import service as accounts
from maskline.accounts.mail import invitation
from maskline.accounts.models import ROLES
from maskline.audit import service as audit
from maskline.audit.service import Actor
from maskline.errors import AppError, NotFound
from maskline.portal.web import (
    OrgPage,
    client_address,
    form_of,
    not_found,
    org_page,
    redirect,
    render,
    services,
)

router = APIRouter(prefix="/o/{org_id}/members", include_in_schema=False)


async def _members_page(
    request: Request,
    page: OrgPage,
    *,
    error: str | None = None,
    status: int = 200,
    values: dict[str, str] | None = None,
) -> Response:
    runtime = services(request)
    async with runtime.db.read() as session:
        members = await accounts.members(session, page.org.id)
    context = page.context(
        "members",
        members=members,
        roles=ROLES,
        error=error,
        values=values or {"email": "", "role": "developer"},
        invited=request.query_params.get("invited"),
    )
    return render(request, "members.html", context, status=status)


@router.get("")
async def members_page(request: Request, org_id: str) -> Response:
    return await _members_page(request, await org_page(request, org_id, "members"))


@router.post("")
async def invite(request: Request, org_id: str) -> Response:
    page = await org_page(request, org_id, "members")
    form = await form_of(request)
    runtime = services(request)
    values = {"email": form.get("email", "").strip(), "role": form.get("role", "")}
    now = runtime.clock.now()
    actor = Actor(page.user.email, client_address(request))

    async def change(session: AsyncSession) -> accounts.Invited:
        invited = await accounts.invite(session, org_id, values["email"], values["role"], now=now)
        detail = f"Invited {invited.user.email} as {invited.role}"
        await audit.record(session, org_id, actor, "member.invited", detail, now=now)
        return invited

    try:
        invited = await runtime.db.transaction(change)
    except AppError as exc:
        return await _members_page(request, page, error=exc.message, status=400, values=values)
    link = accounts.link_url(runtime.settings.public_url, "sign_in", invited.link)
    subject, body = invitation(page.org.name, invited.role, link, by=page.user.name)
    await runtime.mailer.send(invited.user.email, subject, body)
    return redirect(request, f"/o/{org_id}/members?invited=1")


@router.post("/{user_id}/role")
async def change_role(request: Request, org_id: str, user_id: str) -> Response:
    page = await org_page(request, org_id, "members")
    form = await form_of(request)
    runtime = services(request)
    now = runtime.clock.now()
    actor = Actor(page.user.email, client_address(request))

    async def change(session: AsyncSession) -> None:
        user, old = await accounts.change_role(session, org_id, user_id, form.get("role", ""))
        new = form.get("role", "")
        if old != new:
            detail = f"{user.email}: {old} → {new}"
            await audit.record(session, org_id, actor, "member.role_changed", detail, now=now)

    try:
        await runtime.db.transaction(change)
    except NotFound:
        raise not_found() from None
    except AppError as exc:
        return await _members_page(request, page, error=exc.message, status=exc.status_code)
    return redirect(request, f"/o/{org_id}/members")


@router.post("/{user_id}/remove")
async def remove(request: Request, org_id: str, user_id: str) -> Response:
    page = await org_page(request, org_id, "members")
    await form_of(request)
    runtime = services(request)
    now = runtime.clock.now()
    actor = Actor(page.user.email, client_address(request))

    async def change(session: AsyncSession) -> None:
        user = await accounts.remove_membership(session, org_id, user_id)
        await audit.record(session, org_id, actor, "member.removed", user.email, now=now)

    try:
        await runtime.db.transaction(change)
    except NotFound:
        raise not_found() from None
    except AppError as exc:
        return await _members_page(request, page, error=exc.message, status=exc.status_code)
    # An owner who removed themselves has nothing more to see here.
    target = "/" if user_id == page.user.id else f"/o/{org_id}/members"
    return redirect(request, target)


@router.get("/{user_id}/remove")
async def remove_confirm(request: Request, org_id: str, user_id: str) -> Response:
    page = await org_page(request, org_id, "members")
    runtime = services(request)
    async with runtime.db.read() as session:
        found = await accounts.membership(session, org_id, user_id)
        if found is None:
            raise not_found()
        user = await accounts.get_user(session, user_id)
    context = page.context(
        "members",
        title=f"Remove {user.email}?",
        text=f"{user.email} will no longer reach {page.org.name}. Their account stays.",
        action=f"/o/{org_id}/members/{user_id}/remove",
        button="Remove member",
        back=f"/o/{org_id}/members",
    )
    return render(request, "confirm.html", context)
