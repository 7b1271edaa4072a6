"""``INSERT … ON CONFLICT`` for the two databases we run on."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase


def insert_for(session: AsyncSession, model: type[DeclarativeBase]) -> Any:
    """The dialect's own ``insert`` (which has ``on_conflict_do_update``) for ``model``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)
