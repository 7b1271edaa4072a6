"""Passwords: argon2id (argon2-cffi's defaults, RFC 9106's second recommended set), hashed
and checked off the event loop (each takes tens of milliseconds of CPU)."""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from maskline.errors import InvalidRequest

MIN_LENGTH = 10
MAX_LENGTH = 1024

_hasher = PasswordHasher()


@cache
def _decoy() -> str:
    """Checked when an email has no account (or no password), so that a wrong email
    takes as long as a wrong password and the time does not tell whether an account
    exists. Made at the first such check, not at import (a hash costs tens of ms and
    64 MiB, in every process that imports the portal, the CLI's included)."""
    return _hasher.hash("decoy password never accepted")


async def prepare() -> None:
    """Make the decoy before the first sign-in (at start-up), so that the first wrong
    email is no slower than a wrong password either."""
    await asyncio.to_thread(_decoy)


def check_new_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"password must be at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"password must be at most {MAX_LENGTH} characters.")
    return password


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, check_new_password(password))


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _decoy(), password[:MAX_LENGTH]) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; with no stored hash, as slow and False."""
    return await asyncio.to_thread(_verify, stored, password)
