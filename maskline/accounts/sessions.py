"""Portal sessions (SPEC §12): an opaque random token in a cookie, stored as a hash;
12 h idle and 7 days absolute; sign-in starts a new one; a password change or reset
ends every other one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.accounts.models import PortalSession, User
from maskline.accounts.service import new_token, token_hash
from maskline.kit.ids import new_id

IDLE = timedelta(hours=12)
ABSOLUTE = timedelta(days=7)
# last_seen_at is written at most this often per session (not on every page).
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Started:
    session_id: str
    token: str


@dataclass(frozen=True, slots=True)
class Current:
    session_id: str
    user: User
    needs_touch: bool


async def start(
    session: AsyncSession, user_id: str, *, now: datetime, address: str | None
) -> Started:
    raw = new_token()
    row = PortalSession(
        id=new_id("ses"),
        token_hash=token_hash(raw),
        user_id=user_id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + ABSOLUTE,
        address=address,
    )
    session.add(row)
    await session.flush()
    return Started(session_id=row.id, token=raw)


async def current(session: AsyncSession, raw: str, *, now: datetime) -> Current | None:
    """The signed-in user of the cookie's token, if its session is still alive."""
    row = (
        await session.execute(
            select(PortalSession, User)
            .join(User, User.id == PortalSession.user_id)
            .where(PortalSession.token_hash == token_hash(raw))
        )
    ).one_or_none()
    if row is None:
        return None
    found, user = row
    if found.expires_at <= now or found.last_seen_at + IDLE <= now:
        return None
    return Current(
        session_id=found.id, user=user, needs_touch=found.last_seen_at + TOUCH_EVERY <= now
    )


async def touch(session: AsyncSession, session_id: str, *, now: datetime) -> None:
    await session.execute(
        update(PortalSession).where(PortalSession.id == session_id).values(last_seen_at=now)
    )


async def end(session: AsyncSession, session_id: str) -> None:
    await session.execute(delete(PortalSession).where(PortalSession.id == session_id))


async def end_all(session: AsyncSession, user_id: str, *, but: str | None = None) -> None:
    """End every session of ``user_id`` (but ``but``, the one making the change)."""
    statement = delete(PortalSession).where(PortalSession.user_id == user_id)
    if but is not None:
        statement = statement.where(PortalSession.id != but)
    await session.execute(statement)


async def purge_expired(session: AsyncSession, *, now: datetime) -> None:
    await session.execute(
        delete(PortalSession).where(
            (PortalSession.expires_at <= now) | (PortalSession.last_seen_at <= now - IDLE)
        )
    )


async def of_user(session: AsyncSession, user_id: str, *, now: datetime) -> list[PortalSession]:
    """The user's live sessions, the most recently seen first."""
    rows = await session.execute(
        select(PortalSession)
        .where(
            PortalSession.user_id == user_id,
            PortalSession.expires_at > now,
            PortalSession.last_seen_at > now - IDLE,
        )
        .order_by(PortalSession.last_seen_at.desc(), PortalSession.id)
    )
    return list(rows.scalars())


async def end_of_user(session: AsyncSession, user_id: str, session_id: str) -> bool:
    """End one of the user's own sessions; False when it is not theirs (or gone)."""
    result = await session.execute(
        delete(PortalSession)
        .where(PortalSession.user_id == user_id, PortalSession.id == session_id)
        .returning(PortalSession.id)
    )
    return result.first() is not None
