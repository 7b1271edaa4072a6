"""Signed-out pages: sign-up, sign-in, sign-out, email verification, password reset and
one-time sign-in links (SPEC §12)."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.accounts import passwords, sessions
from maskline.accounts import service as accounts
from maskline.errors import AppError, ConflictError
from maskline.portal.web import (
    PageError,
    clear_session_cookie,
    client_address,
    form_of,
    redirect,
    render,
    services,
    session_cookie,
    set_session_cookie,
    signed_in,
)

router = APIRouter(include_in_schema=False)

# Sign-in attempts a minute (SPEC §12): per account (counted under a digest of the email
# typed, so an email without an account is limited the same way) and per address.
SIGN_IN_PER_ACCOUNT = 10
SIGN_IN_PER_ADDRESS = 30
WRONG_CREDENTIALS = "The email or password is not right."
TOO_MANY = "Too many sign-in attempts. Wait a minute, then try again."
LINK_GONE = "This link has expired or has been used already. Ask for a new one."


def _safe_next(raw: str | None) -> str:
    """Only a path of this site (never //host or a scheme): no open redirect."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    parts = urlsplit(raw)
    return "/" if parts.scheme or parts.netloc else raw


async def _sign_in_as(request: Request, user_id: str, *, end_others: bool = False) -> Response:
    """A new session for ``user_id`` (a new token at every sign-in), the old one ended."""
    runtime = services(request)
    now = runtime.clock.now()
    old = request.cookies.get(session_cookie(request))

    async def change(session: AsyncSession) -> sessions.Started:
        if end_others:
            await sessions.end_all(session, user_id)
        elif old:
            found = await sessions.current(session, old, now=now)
            if found is not None:
                await sessions.end(session, found.session_id)
        return await sessions.start(session, user_id, now=now, address=client_address(request))

    started = await runtime.db.transaction(change)
    response = redirect(request, _safe_next(request.query_params.get("next")))
    set_session_cookie(request, response, started.token)
    return response


@router.get("/")
async def home(request: Request) -> Response:
    current = await signed_in(request)
    if current is None:
        return redirect(request, "/sign-in")
    runtime = services(request)
    async with runtime.db.read() as session:
        orgs = await accounts.organisations_of(session, current.user.id)
    if not orgs:
        return render(request, "no_org.html", {"user": current.user})
    return redirect(request, f"/o/{orgs[0].org.id}")


def _signup_open(request: Request) -> None:
    if services(request).settings.signup_mode != "open":
        raise PageError(
            404,
            "Sign-up is by invitation",
            "Accounts on this installation are created by invitation. Ask an owner of your "
            "organisation or the operator.",
        )


@router.get("/sign-up")
async def sign_up_form(request: Request) -> Response:
    _signup_open(request)
    return render(request, "sign_up.html", {"values": {}})


@router.post("/sign-up")
async def sign_up(request: Request) -> Response:
    _signup_open(request)
    form = await form_of(request)
    runtime = services(request)
    values = {k: form.get(k, "") for k in ("name", "email", "company")}
    try:
        email, _key = accounts.check_email(values["email"])
        accounts.check_person_name(values["name"])
        password_hash = await passwords.hash_password(form.get("password", ""))
    except AppError as exc:
        return render(request, "sign_up.html", {"values": values, "error": exc.message}, status=400)
    now = runtime.clock.now()

    async def change(session: AsyncSession) -> str:
        signed = await accounts.sign_up(
            session,
            name=values["name"],
            email=email,
            company=values["company"],
            password_hash=password_hash,
            box=runtime.box,
            now=now,
        )
        return await accounts.issue_link(session, signed.user.id, "verify", now=now)

    try:
        raw = await runtime.db.transaction(change)
    except ConflictError:
        # The same answer as for a new address: sign-up does not tell who has an account.
        await runtime.mailer.send(
            email,
            "Someone tried to sign up with your email",
            "Someone (maybe you) tried to open a maskline account with this email, which "
            f"already has one. To sign in: {runtime.settings.public_url}/sign-in\n"
            f"Forgot the password? {runtime.settings.public_url}/reset\n",
        )
        return render(request, "check_mail.html", {"email": email})
    except AppError as exc:
        return render(request, "sign_up.html", {"values": values, "error": exc.message}, status=400)
    link = accounts.link_url(runtime.settings.public_url, "verify", raw)
    await runtime.mailer.send(
        email,
        "Verify your email for maskline",
        f"Welcome to maskline. Verify your email (the link works once, for 24 hours):\n\n{link}\n",
    )
    return render(request, "check_mail.html", {"email": email})


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    return render(request, "sign_in.html", {"email": "", "next": request.query_params.get("next")})


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await form_of(request)
    runtime = services(request)
    email = form.get("email", "").strip()
    context: dict[str, Any] = {"email": email, "next": request.query_params.get("next")}
    account_bucket = hashlib.sha256(email.lower().encode()).hexdigest()[:32]
    by_account = await runtime.limiter.hit(f"portal-sign-in:{account_bucket}", SIGN_IN_PER_ACCOUNT)
    by_address = await runtime.limiter.hit(
        f"portal-sign-in-from:{client_address(request)}", SIGN_IN_PER_ADDRESS
    )
    if not (by_account.allowed and by_address.allowed):
        response = render(request, "sign_in.html", {**context, "error": TOO_MANY}, status=429)
        wait = max(by_account.retry_after_sec, by_address.retry_after_sec)
        response.headers["Retry-After"] = str(wait)
        return response
    async with runtime.db.read() as session:
        user = await accounts.find_user(session, email)
    stored = user.password_hash if user is not None else None
    if not await passwords.verify_password(stored, form.get("password", "")) or user is None:
        return render(request, "sign_in.html", {**context, "error": WRONG_CREDENTIALS}, status=400)
    return await _sign_in_as(request, user.id)


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await form_of(request)
    runtime = services(request)
    raw = request.cookies.get(session_cookie(request))
    if raw:
        now = runtime.clock.now()

        async def change(session: AsyncSession) -> None:
            found = await sessions.current(session, raw, now=now)
            if found is not None:
                await sessions.end(session, found.session_id)

        await runtime.db.transaction(change)
    response = redirect(request, "/sign-in")
    clear_session_cookie(request, response)
    return response


async def _link_page(request: Request, purpose: str, template: str) -> Response:
    """A link opened from a mail shows a button: the link is spent by the POST only, so a
    mail scanner that fetches it does not use it up."""
    token = request.query_params.get("token", "")
    runtime = services(request)
    async with runtime.db.read() as session:
        alive = await accounts.peek_link(session, token, purpose, now=runtime.clock.now())
    if not alive:
        raise PageError(410, "Link expired", LINK_GONE)
    return render(request, template, {"token": token})


async def _spend(request: Request, form: dict[str, str], purpose: str) -> str:
    runtime = services(request)
    now = runtime.clock.now()

    async def change(session: AsyncSession) -> str | None:
        user_id = await accounts.use_link(session, form.get("token", ""), purpose, now=now)
        if user_id is not None and purpose in ("verify", "sign_in"):
            await accounts.mark_verified(session, user_id, now=now)
        return user_id

    user_id = await runtime.db.transaction(change)
    if user_id is None:
        raise PageError(410, "Link expired", LINK_GONE)
    return user_id


@router.get("/verify")
async def verify_page(request: Request) -> Response:
    return await _link_page(request, "verify", "verify.html")


@router.post("/verify")
async def verify(request: Request) -> Response:
    form = await form_of(request)
    return await _sign_in_as(request, await _spend(request, form, "verify"))


@router.get("/sign-in/link")
async def sign_in_link_page(request: Request) -> Response:
    return await _link_page(request, "sign_in", "sign_in_link.html")


@router.post("/sign-in/link")
async def sign_in_link(request: Request) -> Response:
    form = await form_of(request)
    return await _sign_in_as(request, await _spend(request, form, "sign_in"))


@router.get("/reset")
async def reset_page(request: Request) -> Response:
    if "token" in request.query_params:
        return await _link_page(request, "reset", "reset_password.html")
    return render(request, "reset_request.html", {})


@router.post("/reset")
async def reset_request(request: Request) -> Response:
    form = await form_of(request)
    runtime = services(request)
    email = form.get("email", "").strip()
    now = runtime.clock.now()

    async def change(session: AsyncSession) -> tuple[str, str] | None:
        user = await accounts.find_user(session, email)
        if user is None:
            return None
        return user.email, await accounts.issue_link(session, user.id, "reset", now=now)

    issued = await runtime.db.transaction(change)
    if issued is not None:
        to, raw = issued
        link = accounts.link_url(runtime.settings.public_url, "reset", raw)
        await runtime.mailer.send(
            to,
            "Reset your maskline password",
            f"To choose a new password, open this link (it works once, for 1 hour):\n\n{link}\n\n"
            "If you did not ask for this, ignore this mail: your password stays as it is.\n",
        )
    # The same page whether or not the email has an account.
    return render(request, "check_mail.html", {"email": email, "reset": True})


@router.post("/reset/password")
async def reset_password(request: Request) -> Response:
    form = await form_of(request)
    runtime = services(request)
    try:
        password_hash = await passwords.hash_password(form.get("password", ""))
    except AppError as exc:
        context = {"token": form.get("token", ""), "error": exc.message}
        return render(request, "reset_password.html", context, status=400)
    user_id = await _spend(request, form, "reset")
    await runtime.db.transaction(lambda s: accounts.set_password(s, user_id, password_hash))
    # A reset ends every session of the account, then signs this browser in afresh.
    return await _sign_in_as(request, user_id, end_others=True)
