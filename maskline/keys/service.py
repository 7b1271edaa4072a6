"""API keys: ``vp_live_``/``vp_test_`` + random body + checksum; only a hash is stored."""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.errors import NotFound, Unauthorized
from maskline.keys.models import ApiKey
from maskline.kit.ids import ALPHABET, new_id, random_base62
from maskline.kit.scope import owned_by, scoped
from maskline.orgs.models import Organisation

BODY_LENGTH = 32
CHECKSUM_LENGTH = 6
DISPLAY_PREFIX_LENGTH = 4
KEY_PATTERN = re.compile(
    rf"vp_(live|test)_([A-Za-z0-9]{{{BODY_LENGTH}}})([A-Za-z0-9]{{{CHECKSUM_LENGTH}}})"
)
# last_used_at is a hint for operators, not an audit log: refresh it at most this often
# so that authentication does not turn every read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def _checksum(text: str) -> str:
    value = zlib.crc32(text.encode("ascii"))
    digits = []
    for _ in range(CHECKSUM_LENGTH):
        value, digit = divmod(value, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return "".join(digits)


def generate_key(*, test: bool) -> str:
    head = "vp_test_" if test else "vp_live_"
    body = random_base62(BODY_LENGTH)
    return f"{head}{body}{_checksum(head + body)}"


def is_well_formed(raw: str) -> bool:
    match = KEY_PATTERN.fullmatch(raw)
    if match is None:
        return False
    head = f"vp_{match.group(1)}_"
    return _checksum(head + match.group(2)) == match.group(3)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("ascii")).hexdigest()


def display_prefix(raw: str) -> str:
    return raw[: len("vp_live_") + DISPLAY_PREFIX_LENGTH]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key and its organisation."""

    key_id: str
    org_id: str
    is_sandbox: bool
    rate_limit: int | None
    needs_touch: bool


async def create_key(
    session: AsyncSession,
    org: Organisation,
    *,
    now: datetime,
    rate_limit: int | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key for ``org``; returns the row and the only copy of the plaintext key."""
    raw = generate_key(test=org.is_sandbox)
    key = ApiKey(
        id=new_id("key"),
        org_id=org.id,
        prefix=display_prefix(raw),
        key_hash=hash_key(raw),
        is_test=org.is_sandbox,
        rate_limit=rate_limit,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    return key, raw


async def authenticate(session: AsyncSession, raw: str, *, now: datetime) -> Principal:
    if not is_well_formed(raw):
        raise Unauthorized("The API key is malformed.")
    row = (
        await session.execute(
            select(ApiKey, Organisation.is_sandbox)
            .join(Organisation, owned_by(ApiKey, Organisation.id))
            .where(ApiKey.key_hash == hash_key(raw))
        )
    ).one_or_none()
    if row is None:
        raise Unauthorized("The API key is not valid.")
    key, is_sandbox = row
    if key.revoked_at is not None:
        raise Unauthorized("The API key has been revoked.")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized("The API key has expired.")
    stale = key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION
    return Principal(
        key_id=key.id,
        org_id=key.org_id,
        is_sandbox=is_sandbox,
        rate_limit=key.rate_limit,
        needs_touch=stale,
    )


async def touch(session: AsyncSession, key_id: str, *, now: datetime) -> None:
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


async def list_keys(session: AsyncSession, org_id: str) -> list[ApiKey]:
    result = await session.execute(scoped(ApiKey, org_id).order_by(ApiKey.created_at, ApiKey.id))
    return list(result.scalars())


async def revoke_key(session: AsyncSession, key_id: str, *, now: datetime) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"No API key with id {key_id!r}.")
    if key.revoked_at is None:
        key.revoked_at = now
        await session.flush()
    return key
