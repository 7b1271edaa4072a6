"""Claiming rows by lease: one statement, on both databases (ARCHITECTURE §3).

A claim stamps up to ``limit`` due rows with their new owner and lease in one
``UPDATE … WHERE key IN (SELECT key … LIMIT n) RETURNING …``. On PostgreSQL the
inner select takes ``FOR UPDATE SKIP LOCKED``: two claimers skip each other's rows
rather than wait for them or take them twice, and a row is only re-checked against
the conditions once it is locked. SQLite has no row locks and renders no ``FOR
UPDATE``: the statement runs inside ``Database.transaction``'s ``BEGIN IMMEDIATE``,
and one writer at a time does the same. Renewing a lease is the same statement
without a limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Result, Update, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute


@dataclass(frozen=True, slots=True)
class Lease:
    """The terms of one claim or renewal, dated once the write transaction is ours (a
    lease dated from before a wait for the write lock could have lapsed when committed)."""

    owner: str
    now: datetime
    until: datetime
    # The most rows one claim takes.
    limit: int


def unleased(
    expires_at: InstrumentedAttribute[datetime | None] | ColumnElement[Any],
    now: datetime | ColumnElement[Any],
) -> ColumnElement[bool]:
    """A row no one holds at ``now``: never leased, or its lease has lapsed."""
    return or_(expires_at.is_(None), expires_at < now)


def lease_statement(
    key: Any,
    *,
    where: Sequence[ColumnElement[bool]],
    stamp: Mapping[Any, Any],
    returning: Sequence[Any],
    order_by: Sequence[Any] = (),
    limit: Any = None,
) -> Update:
    """The claim of ``lease_rows`` as a statement: ``key`` an ORM attribute (the rows
    of its entity) or a table's column. Built with bind parameters for what changes
    from one claim to the next (the time, the owner, the limit), it can be built once
    and run with their values: a claimer woken for every committed event does not
    build and hash a new statement each time."""
    target = key.class_ if isinstance(key, InstrumentedAttribute) else key.table
    due = (
        select(key).where(*where).order_by(*order_by).limit(limit).with_for_update(skip_locked=True)
    )
    return (
        update(target)
        .where(key.in_(due.scalar_subquery()))
        .values({column: value for column, value in stamp.items()})
        .returning(*returning)
    )


async def lease_rows(
    session: AsyncSession,
    key: InstrumentedAttribute[Any],
    *,
    where: Sequence[ColumnElement[bool]],
    stamp: Mapping[InstrumentedAttribute[Any], Any],
    returning: Sequence[Any],
    order_by: Sequence[Any] = (),
    limit: int | None = None,
) -> Result[Any]:
    """Stamp the rows of ``key``'s table that match ``where`` (the first ``limit`` of
    them in ``order_by``, none that another transaction holds locked) with ``stamp``,
    and return ``returning`` of each; the caller's transaction commits it."""
    return await session.execute(
        lease_statement(
            key, where=where, stamp=stamp, returning=returning, order_by=order_by, limit=limit
        )
    )
