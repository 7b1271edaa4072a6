"""Identifiers: prefixed random ids for our rows, UUID v4 for calls."""

from __future__ import annotations

import secrets
import string
import uuid

ALPHABET = string.ascii_letters + string.digits


# Random bytes below 248 (4 × 62) map evenly onto the alphabet; the rest are dropped.
_EVEN = 4 * len(ALPHABET)
_TO_ALPHABET = bytes(ord(ALPHABET[b % len(ALPHABET)]) for b in range(256))
_UNEVEN = bytes(range(_EVEN, 256))


def random_base62(length: int) -> str:
    """``length`` characters drawn uniformly from base62, from the system's CSPRNG."""
    out = b""
    while len(out) < length:
        out += secrets.token_bytes(length + 4).translate(_TO_ALPHABET, _UNEVEN)
    return out[:length].decode("ascii")


def new_id(prefix: str, length: int = 20) -> str:
    """``org_3kT9…``: a prefix that says what the id names, then random base62."""
    return f"{prefix}_{random_base62(length)}"


def new_call_sid() -> str:
    return str(uuid.uuid4())
