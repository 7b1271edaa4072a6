"""The portal's HTTP plumbing: templates, security headers, the session cookie, CSRF,
and who is signed in to which organisation with which role."""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from maskline.accounts import service as accounts
from maskline.accounts import sessions
from maskline.accounts.mail import Mailer
from maskline.accounts.models import User
from maskline.errors import ConfigurationError
from maskline.keys.principals import PrincipalCache
from maskline.kit.crypto import KeyedDigest, SecretBox
from maskline.kit.ratelimit import RateLimiter
from maskline.kit.web import Services
from maskline.orgs.models import Organisation
from maskline.payments.gateway import Razorpay
from maskline.recordings.calls import Calls
from maskline.recordings.signing import UrlSigner
from maskline.recordings.storage import Storage
from maskline.telephony.media.recorder import Spool

HERE = Path(__file__).parent
FLASH_COOKIE = "maskline_once"


def _pager(query: Any, page: int) -> str:
    """The query string with ``page`` set (the Calls list's Newer/Older links)."""
    items = [(k, v) for k, v in query.multi_items() if k != "page"]
    return urlencode([*items, ("page", str(page))])


@functools.cache
def templates() -> Jinja2Templates:
    """The portal's templates, loaded when the first page is rendered."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False
    )
    loaded = Jinja2Templates(env=env)
    loaded.env.filters["pager"] = _pager
    return loaded


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class PortalServices(Services, Protocol):
    """What the portal uses of the running process."""

    box: SecretBox
    limiter: RateLimiter
    mailer: Mailer
    pair_digest: KeyedDigest
    principals: PrincipalCache
    csrf_digest: KeyedDigest
    razorpay: Razorpay | None
    signer: UrlSigner
    storage: Storage
    spool: Spool
    recorded_calls: Calls

    def wake_worker(self) -> None: ...


def services(request: Request) -> PortalServices:
    runtime: PortalServices = request.app.state.runtime
    return runtime


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _secure(request: Request) -> bool:
    return services(request).settings.public_url.startswith("https://")


def session_cookie(request: Request) -> str:
    return "__Host-maskline_session" if _secure(request) else "maskline_session"


def _pre_cookie(request: Request) -> str:
    return "__Host-maskline_pre" if _secure(request) else "maskline_pre"


def _set_cookie(request: Request, response: Response, name: str, value: str, **kw: Any) -> None:
    response.set_cookie(
        name, value, path="/", httponly=True, samesite="lax", secure=_secure(request), **kw
    )


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    _set_cookie(request, response, session_cookie(request), token)


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        session_cookie(request), path="/", secure=_secure(request), httponly=True, samesite="lax"
    )


def _csrf_basis(request: Request) -> str | None:
    return request.cookies.get(session_cookie(request)) or request.cookies.get(_pre_cookie(request))


def csrf_token(request: Request) -> str:
    """The token forms carry: a keyed digest of the session's token (or, signed out, of
    a random cookie of the browser's), so it cannot be made without reading our page."""
    basis = _csrf_basis(request) or getattr(request.state, "pre_session", None)
    if basis is None:
        basis = accounts.new_token()
        request.state.pre_session = basis
    return services(request).csrf_digest(f"csrf:{basis}")


def csrf_ok(request: Request, sent: object) -> bool:
    basis = _csrf_basis(request)
    if basis is None or not isinstance(sent, str):
        return False
    return hmac.compare_digest(services(request).csrf_digest(f"csrf:{basis}"), sent)


def _finish(request: Request, response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    pre = getattr(request.state, "pre_session", None)
    if pre is not None:
        _set_cookie(request, response, _pre_cookie(request), pre)
    return response


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> Response:
    values = {"csrf": csrf_token(request), **(context or {})}
    response = templates().TemplateResponse(request, template, values, status_code=status)
    return _finish(request, response)


def redirect(request: Request, to: str) -> Response:
    return _finish(request, RedirectResponse(to, status_code=303))


def fragment(request: Request, template: str, context: dict[str, Any]) -> Response:
    response = templates().TemplateResponse(request, template, context)
    return _finish(request, response)


class PageError(Exception):
    """A page the user may not see: rendered as an HTML error page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class SignInRequired(Exception):
    """Raised by a page for a visitor who is not signed in: answered with a redirect."""


def not_found() -> PageError:
    return PageError(404, "Not found", "There is no such page, or it is not yours to see.")


def forbidden() -> PageError:
    return PageError(403, "Not allowed", "Your role in this organisation does not allow this.")


def error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return render(
        request, "error.html", {"title": exc.title, "message": exc.message}, status=exc.status
    )


def sign_in_redirect(request: Request, exc: Exception) -> Response:
    target = request.url.path
    if request.url.query:
        target += f"?{request.url.query}"
    response = redirect(request, f"/sign-in?next={quote(target, safe='')}")
    clear_session_cookie(request, response)
    return response


async def signed_in(request: Request) -> sessions.Current | None:
    raw = request.cookies.get(session_cookie(request))
    if not raw:
        return None
    runtime = services(request)
    now = runtime.clock.now()
    async with runtime.db.read() as session:
        found = await sessions.current(session, raw, now=now)
    if found is not None and found.needs_touch:
        session_id = found.session_id
        await runtime.db.transaction(lambda s: sessions.touch(s, session_id, now=now))
    return found


async def require_user(request: Request) -> sessions.Current:
    found = await signed_in(request)
    if found is None:
        raise SignInRequired
    return found


ROLE_PAGES = {
    "overview": ("owner", "developer", "billing"),
    "keys": ("owner", "developer"),
    "calls": ("owner", "developer"),
    "recordings": ("owner", "developer"),
    "webhooks": ("owner", "developer"),
    "usage": ("owner", "developer", "billing"),
    "numbers": ("owner", "developer"),
    "wallet": ("owner", "billing"),
    "members": ("owner",),
    "audit": ("owner",),
    "account": ("owner", "developer", "billing"),
}
# The sections in the navigation, in order (a call's recording is on the call's page).
NAV = [
    ("overview", "Overview"),
    ("keys", "API keys"),
    ("calls", "Calls"),
    ("webhooks", "Webhooks"),
    ("usage", "Usage"),
    ("numbers", "Numbers"),
    ("wallet", "Wallet"),
    ("members", "Members"),
    ("audit", "Audit log"),
    ("account", "Account"),
]


@dataclass(frozen=True)
class OrgPage:
    """A signed-in user on a page of one of their organisations."""

    current: sessions.Current
    org: Organisation
    role: str
    orgs: list[accounts.OrgAccess]
    twin: Organisation | None

    @property
    def user(self) -> User:
        return self.current.user

    def context(self, section: str, **values: Any) -> dict[str, Any]:
        return {"page": self, "section": section, "role_pages": ROLE_PAGES, "nav": NAV, **values}


async def org_page(request: Request, org_id: str, section: str) -> OrgPage:
    """The organisation's page for the signed-in user: 404 unless they are a member
    (another organisation's page looks exactly like a page that does not exist), 403
    when their role does not open ``section``."""
    current = await require_user(request)
    runtime = services(request)
    async with runtime.db.read() as session:
        orgs = await accounts.organisations_of(session, current.user.id)
        access = next((a for a in orgs if a.org.id == org_id), None)
        if access is None:
            raise not_found()
        twin_id = await accounts.twin_of(session, org_id)
    if access.role not in ROLE_PAGES[section]:
        raise forbidden()
    twin = next((a.org for a in orgs if a.org.id == twin_id), None)
    return OrgPage(current=current, org=access.org, role=access.role, orgs=orgs, twin=twin)


async def form_of(request: Request) -> dict[str, str]:
    """The posted form's text fields; PageError 403 when its CSRF token is not right."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_ok(request, values.get("csrf")):
        raise PageError(
            403,
            "Form expired",
            "This form has expired or did not come from this site. Reload the page and try again.",
        )
    return values


def set_flash(request: Request, response: Response, path: str, secret: str) -> None:
    """Hand ``secret`` to the next GET of ``path`` only (the POST/redirect/GET of a
    value shown once): encrypted, bound to this session, HttpOnly, for 5 minutes."""
    basis = request.cookies.get(session_cookie(request), "")
    sealed = services(request).box.encrypt(f"flash:{csrf_digest_of(request, basis)}:{secret}")
    response.set_cookie(
        FLASH_COOKIE,
        sealed,
        path=path,
        max_age=300,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def read_flash(request: Request) -> str | None:
    """The value ``set_flash`` left for this page (the page's answer must then
    ``clear_flash``, so a reload shows nothing)."""
    sealed = request.cookies.get(FLASH_COOKIE)
    if sealed is None:
        return None
    basis = request.cookies.get(session_cookie(request), "")
    try:
        opened = services(request).box.decrypt(sealed)
    except (ConfigurationError, ValueError, UnicodeError):
        return None
    prefix = f"flash:{csrf_digest_of(request, basis)}:"
    return opened.removeprefix(prefix) if opened.startswith(prefix) else None


def clear_flash(request: Request, response: Response, path: str) -> None:
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(
            FLASH_COOKIE, path=path, secure=_secure(request), httponly=True, samesite="lax"
        )


def csrf_digest_of(request: Request, basis: str) -> str:
    return services(request).csrf_digest(f"flash:{basis}")
