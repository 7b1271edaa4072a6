"""API keys: ``vp_live_``/``vp_test_`` + random body + checksum; only a hash is stored."""

from __future__ import annotations

import hashlib
import re
import zlib
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.errors import NotFound, Unauthorized
from maskline.keys.models import ApiKey
from maskline.keys.principals import CallTerms, KeyGrant, Principal, PrincipalCache
from maskline.kit.ids import ALPHABET, new_id, random_base62
from maskline.kit.scope import owned_by, scoped
from maskline.orgs.models import Organisation

BODY_LENGTH = 32
CHECKSUM_LENGTH = 6
DISPLAY_PREFIX_LENGTH = 4
KEY_PATTERN = re.compile(
    rf"vp_(live|test)_([A-Za-z0-9]{{{BODY_LENGTH}}})([A-Za-z0-9]{{{CHECKSUM_LENGTH}}})"
)


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


async def create_key(
    session: AsyncSession,
    org: Organisation,
    *,
    now: datetime,
    rate_limit: int | None = None,
    expires_at: datetime | None = None,
    name: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key for ``org``; returns the row and the only copy of the plaintext key."""
    raw = generate_key(test=org.is_sandbox)
    key = ApiKey(
        id=new_id("key"),
        org_id=org.id,
        prefix=display_prefix(raw),
        name=name,
        key_hash=hash_key(raw),
        is_test=org.is_sandbox,
        rate_limit=rate_limit,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    return key, raw


def key_hash_of(raw: str) -> str:
    """The hash a key is stored and remembered under; 401 for a malformed key (no lookup)."""
    if not is_well_formed(raw):
        raise Unauthorized("The API key is malformed.")
    return hash_key(raw)


async def find_grant(session: AsyncSession, key_hash: str) -> KeyGrant:
    """The key stored under ``key_hash`` with its organisation's call terms, in one
    joined SELECT; 401 if there is none. Revocation and expiry are ``admit``'s."""
    row = (
        await session.execute(
            select(
                ApiKey.id,
                ApiKey.org_id,
                ApiKey.rate_limit,
                ApiKey.revoked_at,
                ApiKey.expires_at,
                ApiKey.last_used_at,
                Organisation.is_sandbox,
                Organisation.rate_paise,
                Organisation.pulse_sec,
                Organisation.max_live_calls,
            )
            .join(Organisation, owned_by(ApiKey, Organisation.id))
            .where(ApiKey.key_hash == key_hash)
        )
    ).one_or_none()
    if row is None:
        raise Unauthorized("The API key is not valid.")
    return KeyGrant(
        key_id=row.id,
        org_id=row.org_id,
        rate_limit=row.rate_limit,
        terms=CallTerms(
            is_sandbox=row.is_sandbox,
            rate_paise=row.rate_paise,
            pulse_sec=row.pulse_sec,
            max_live_calls=row.max_live_calls,
        ),
        revoked_at=row.revoked_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


def admit(grant: KeyGrant, *, now: datetime, principals: PrincipalCache) -> Principal:
    """The principal ``grant`` gives at ``now``; 401 if the key is revoked or has expired.

    Checked on every request, also for a remembered grant: a key expires on time in
    every process, however recently it was looked up.
    """
    if grant.revoked_at is not None:
        raise Unauthorized("The API key has been revoked.")
    if grant.expires_at is not None and grant.expires_at <= now:
        raise Unauthorized("The API key has expired.")
    return Principal(
        key_id=grant.key_id,
        org_id=grant.org_id,
        rate_limit=grant.rate_limit,
        terms=grant.terms,
        needs_touch=principals.needs_touch(grant, now=now),
    )


async def touch(session: AsyncSession, key_id: str, *, now: datetime) -> None:
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


async def list_keys(session: AsyncSession, org_id: str) -> list[ApiKey]:
    result = await session.execute(scoped(ApiKey, org_id).order_by(ApiKey.created_at, ApiKey.id))
    return list(result.scalars())


async def find_key(session: AsyncSession, org_id: str, key_id: str) -> ApiKey:
    """The organisation's key ``key_id``; NotFound for an unknown one or another's."""
    key = (
        await session.execute(scoped(ApiKey, org_id).where(ApiKey.id == key_id))
    ).scalar_one_or_none()
    if key is None:
        raise NotFound(f"No API key with id {key_id!r}.")
    return key


async def revoke_key(
    session: AsyncSession,
    key_id: str,
    *,
    now: datetime,
    principals: PrincipalCache | None = None,
) -> ApiKey:
    """Revoke a key (again: no change). ``principals``, the calling process's cache if it
    serves requests, forgets the key at once; other processes stop accepting it within
    ``PRINCIPAL_TTL_SEC`` of the commit."""
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"No API key with id {key_id!r}.")
    if key.revoked_at is None:
        key.revoked_at = now
        await session.flush()
    if principals is not None:
        # A request of this process that reloads the key before the commit may remember
        # it once more, for at most the TTL: the bound every other process has anyway.
        principals.forget(key.key_hash)
    return key
