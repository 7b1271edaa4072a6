"""Users, memberships, sign-up and one-time links (SPEC §12). Services flush, never
commit; mail is sent by the edge after the commit."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.accounts.models import ROLES, Membership, OneTimeLink, OrgTwin, User
from maskline.errors import ConflictError, InvalidRequest, NotFound
from maskline.kit.crypto import SecretBox
from maskline.kit.ids import new_id
from maskline.kit.scope import owned_by, scoped
from maskline.onboarding.service import create_org
from maskline.orgs.models import Organisation

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100
MAX_COMPANY_LENGTH = 80
SANDBOX_TWIN_BALANCE_PAISE = 50_000
LINK_LIFETIMES = {
    "verify": timedelta(hours=24),
    "reset": timedelta(hours=1),
    "sign_in": timedelta(hours=24),
}
LINK_PATHS = {"verify": "/verify", "reset": "/reset", "sign_in": "/sign-in/link"}


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def check_email(email: str) -> tuple[str, str]:
    """The address as given (trimmed) and its lookup key (lower case); InvalidRequest
    when it cannot be an address."""
    email = email.strip()
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain.strip(".")
        or len(email) > MAX_EMAIL_LENGTH
        or any(ch.isspace() for ch in email)
        or not email.isprintable()
    ):
        raise InvalidRequest("email must be an email address, like you@example.com.")
    return email, email.lower()


def check_person_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidRequest(f"name must be 1 to {MAX_NAME_LENGTH} printable characters.")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}.")
    return role


async def find_user(session: AsyncSession, email: str) -> User | None:
    key = email.strip().lower()
    return (await session.execute(select(User).where(User.email_key == key))).scalar_one_or_none()


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    password_hash: str | None,
    now: datetime,
    verified: bool = False,
) -> User:
    email, key = check_email(email)
    if await find_user(session, key) is not None:
        raise ConflictError("A user with this email already exists.")
    user = User(
        id=new_id("usr"),
        email=email,
        email_key=key,
        name=check_person_name(name),
        password_hash=password_hash,
        verified_at=now if verified else None,
        created_at=now,
    )
    session.add(user)
    await session.flush()
    return user


async def add_member(
    session: AsyncSession, org_id: str, user: User, role: str, *, now: datetime
) -> Membership:
    """``user`` joins the organisation as ``role`` (a member already: the role changes)."""
    role = check_role(role)
    found = await membership(session, org_id, user.id)
    if found is not None:
        found.role = role
        await session.flush()
        return found
    member = Membership(id=new_id("mem"), user_id=user.id, org_id=org_id, role=role, created_at=now)
    session.add(member)
    await session.flush()
    return member


async def membership(session: AsyncSession, org_id: str, user_id: str) -> Membership | None:
    return (
        await session.execute(scoped(Membership, org_id).where(Membership.user_id == user_id))
    ).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class OrgAccess:
    org: Organisation
    role: str


async def organisations_of(session: AsyncSession, user_id: str) -> list[OrgAccess]:
    """The organisations ``user_id`` belongs to, live ones first, then by name."""
    rows = await session.execute(
        select(Organisation, Membership.role)
        .join(Membership, owned_by(Membership, Organisation.id))
        .where(Membership.user_id == user_id)
        .order_by(Organisation.is_sandbox, Organisation.name)
    )
    return [OrgAccess(org, role) for org, role in rows]


async def twin_of(session: AsyncSession, org_id: str) -> str | None:
    """The other organisation of a live/sandbox pair opened by sign-up, if any."""
    row = (
        await session.execute(
            select(OrgTwin).where((OrgTwin.live_org_id == org_id) | (OrgTwin.test_org_id == org_id))
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return row.test_org_id if row.live_org_id == org_id else row.live_org_id


async def members(session: AsyncSession, org_id: str) -> list[tuple[User, str]]:
    rows = await session.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(owned_by(Membership, org_id))
        .order_by(User.email_key)
    )
    return [(user, role) for user, role in rows]


LAST_OWNER = "An organisation keeps at least one owner: make another member an owner first."


async def _keep_an_owner(session: AsyncSession, org_id: str, leaving: Membership) -> None:
    """ConflictError when ``leaving`` is the organisation's last owner. The owners' rows
    are locked (PostgreSQL; SQLite's writer lock does the same), so two owners demoting
    each other at once cannot leave none."""
    if leaving.role != "owner":
        return
    owners = (
        await session.execute(
            scoped(Membership, org_id).where(Membership.role == "owner").with_for_update()
        )
    ).scalars()
    if not any(o.id != leaving.id for o in owners):
        raise ConflictError(LAST_OWNER)


async def member_by_user(session: AsyncSession, org_id: str, user_id: str) -> Membership:
    found = await membership(session, org_id, user_id)
    if found is None:
        raise NotFound("No such member in this organisation.")
    return found


async def change_role(
    session: AsyncSession, org_id: str, user_id: str, role: str
) -> tuple[User, str]:
    """The member's new role (never the last owner demoted); the user and the old role."""
    role = check_role(role)
    found = await member_by_user(session, org_id, user_id)
    old = found.role
    if role != "owner":
        await _keep_an_owner(session, org_id, found)
    found.role = role
    await session.flush()
    return await get_user(session, user_id), old


async def remove_membership(session: AsyncSession, org_id: str, user_id: str) -> User:
    """The member leaves the organisation (never its last owner); the account stays."""
    found = await member_by_user(session, org_id, user_id)
    await _keep_an_owner(session, org_id, found)
    await session.delete(found)
    await session.flush()
    return await get_user(session, user_id)


async def remove_member(session: AsyncSession, org_id: str, email: str) -> None:
    """The operator's removal (``maskline user remove``): the last owner too, as the
    operator may need to take an organisation from its owners."""
    user = await find_user(session, email)
    found = None if user is None else await membership(session, org_id, user.id)
    if found is None:
        raise NotFound(f"No member with email {email.strip()!r} in this organisation.")
    await session.delete(found)
    await session.flush()


@dataclass(frozen=True, slots=True)
class Invited:
    user: User
    role: str
    link: str  # the only copy of a one-time sign-in link (24 h)


async def invite(
    session: AsyncSession, org_id: str, email: str, role: str, *, now: datetime
) -> Invited:
    """Add ``email`` to the organisation as ``role`` (a new user without a password, or
    an existing one; a member already: the role changes, never the last owner's) and
    issue a one-time sign-in link for them."""
    role = check_role(role)
    address, _key = check_email(email)
    user = await find_user(session, address)
    if user is None:
        user = await create_user(
            session, email=address, name=address.partition("@")[0], password_hash=None, now=now
        )
    existing = await membership(session, org_id, user.id)
    if existing is not None and role != "owner":
        await _keep_an_owner(session, org_id, existing)
    await add_member(session, org_id, user, role, now=now)
    raw = await issue_link(session, user.id, "sign_in", now=now)
    return Invited(user=user, role=role, link=raw)


async def set_name(session: AsyncSession, user_id: str, name: str) -> str:
    name = check_person_name(name)
    await session.execute(update(User).where(User.id == user_id).values(name=name))
    return name


async def _open_named(
    session: AsyncSession, name: str, *, box: SecretBox, now: datetime, sandbox: bool
) -> Organisation:
    """A new organisation named ``name``, or ``name`` and a short suffix when another
    organisation has that name already (names are unique; companies' are not)."""
    candidate = name
    for _ in range(5):
        try:
            opening = SANDBOX_TWIN_BALANCE_PAISE if sandbox else 0
            created = await create_org(
                session, candidate, box=box, now=now, opening_balance=opening, sandbox=sandbox
            )
        except ConflictError:
            candidate = f"{name} {secrets.token_hex(2)}"
            continue
        return created.org
    raise ConflictError("Could not find a free organisation name: try another company name.")


@dataclass(frozen=True, slots=True)
class SignedUp:
    user: User
    live_org_id: str
    test_org_id: str


async def sign_up(
    session: AsyncSession,
    *,
    name: str,
    email: str,
    company: str,
    password_hash: str,
    box: SecretBox,
    now: datetime,
) -> SignedUp:
    """A new user owning a live organisation (wallet Rs 0) and its sandbox twin (Rs 500,
    ``vp_test_`` keys, always on the sim). ConflictError when the email has an account."""
    company = company.strip()
    if not company or len(company) > MAX_COMPANY_LENGTH or not company.isprintable():
        raise InvalidRequest(f"company must be 1 to {MAX_COMPANY_LENGTH} printable characters.")
    user = await create_user(session, email=email, name=name, password_hash=password_hash, now=now)
    live = await _open_named(session, company, box=box, now=now, sandbox=False)
    test = await _open_named(session, f"{company} (test)", box=box, now=now, sandbox=True)
    session.add(OrgTwin(live_org_id=live.id, test_org_id=test.id))
    await add_member(session, live.id, user, "owner", now=now)
    await add_member(session, test.id, user, "owner", now=now)
    return SignedUp(user=user, live_org_id=live.id, test_org_id=test.id)


async def issue_link(session: AsyncSession, user_id: str, purpose: str, *, now: datetime) -> str:
    """A new single-use token for ``purpose``; returns the only copy of it."""
    raw = new_token()
    session.add(
        OneTimeLink(
            id=new_id("lnk"),
            token_hash=token_hash(raw),
            user_id=user_id,
            purpose=purpose,
            created_at=now,
            expires_at=now + LINK_LIFETIMES[purpose],
        )
    )
    await session.flush()
    return raw


def link_url(public_url: str, purpose: str, raw: str) -> str:
    return f"{public_url}{LINK_PATHS[purpose]}?token={raw}"


async def peek_link(session: AsyncSession, raw: str, purpose: str, *, now: datetime) -> bool:
    """Whether ``raw`` is an unused, unexpired link for ``purpose`` (nothing changes)."""
    found = (
        await session.execute(
            select(OneTimeLink.id).where(
                OneTimeLink.token_hash == token_hash(raw),
                OneTimeLink.purpose == purpose,
                OneTimeLink.used_at.is_(None),
                OneTimeLink.expires_at > now,
            )
        )
    ).first()
    return found is not None


async def use_link(session: AsyncSession, raw: str, purpose: str, *, now: datetime) -> str | None:
    """Spend the link: its user's id, once; None when it is unknown, used or expired.
    One conditional UPDATE, so two requests with the same link cannot both spend it."""
    return (
        await session.execute(
            update(OneTimeLink)
            .where(
                OneTimeLink.token_hash == token_hash(raw),
                OneTimeLink.purpose == purpose,
                OneTimeLink.used_at.is_(None),
                OneTimeLink.expires_at > now,
            )
            .values(used_at=now)
            .returning(OneTimeLink.user_id)
        )
    ).scalar_one_or_none()


async def mark_verified(session: AsyncSession, user_id: str, *, now: datetime) -> None:
    await session.execute(
        update(User).where(User.id == user_id, User.verified_at.is_(None)).values(verified_at=now)
    )


async def set_password(session: AsyncSession, user_id: str, password_hash: str) -> None:
    await session.execute(
        update(User).where(User.id == user_id).values(password_hash=password_hash)
    )
    # Links issued before the change are spent with it.
    await session.execute(delete(OneTimeLink).where(OneTimeLink.user_id == user_id))
