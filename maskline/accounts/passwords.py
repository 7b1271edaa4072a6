"""Passwords: argon2id (argon2-cffi's defaults, RFC 9106's second recommended set), hashed
and checked off the event loop (each takes tens of milliseconds of CPU)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from maskline.errors import InvalidRequest

MIN_LENGTH = 10
MAX_LENGTH = 1024

_hasher = PasswordHasher()
# Checked when an email has no account (or no password), so that a wrong email takes as
# long as a wrong password and the time does not tell whether an account exists.
_DECOY = _hasher.hash("decoy password never accepted")


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
        return _hasher.verify(stored or _DECOY, password[:MAX_LENGTH]) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; with no stored hash, as slow and False."""
    return await asyncio.to_thread(_verify, stored, password)
