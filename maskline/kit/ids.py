"""Identifiers: prefixed random ids for our rows, UUID v4 for calls."""

from __future__ import annotations

import secrets
import string
import uuid

ALPHABET = string.ascii_letters + string.digits


def random_base62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 20) -> str:
    """``org_3kT9…``: a prefix that says what the id names, then random base62."""
    return f"{prefix}_{random_base62(length)}"


def new_call_sid() -> str:
    return str(uuid.uuid4())
