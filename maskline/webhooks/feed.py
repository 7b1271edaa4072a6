"""The event feed (SPEC §6): cursors given after commit, by one writer per organisation.

An event becomes visible in the feed once it has a cursor. Cursors are handed
out in a transaction that holds the organisation's feed lock, so they only
grow, and a reader that follows ``next_cursor`` sees every event once, in order.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.scope import owned_by, scoped
from maskline.kit.upsert import insert_for
from maskline.webhooks.models import CallEvent, EventFeedCounter

BATCH = 500


@functools.cache
def _number_events() -> Any:
    """Give the first ``BATCH`` events without a cursor, in (created_at, call, sequence)
    order, the cursors that follow their organisation's last: one statement for every
    organisation at once. The first events of all in that order are, for each
    organisation, its own first ones, so each gets a prefix of its order."""
    events = CallEvent.metadata.tables[CallEvent.__tablename__]
    order = (events.c.created_at, events.c.call_sid, events.c.sequence)
    waiting = select(events.c.id).where(events.c.cursor.is_(None)).order_by(*order).limit(BATCH)
    numbered = (
        select(
            events.c.id,
            (
                func.coalesce(EventFeedCounter.last_cursor, 0)
                + func.row_number().over(partition_by=events.c.org_id, order_by=order)
            ).label("cursor"),
        )
        .select_from(events)
        .outerjoin(EventFeedCounter, owned_by(EventFeedCounter, events.c.org_id))
        .where(events.c.id.in_(waiting.scalar_subquery()))
        .subquery()
    )
    return (
        update(events)
        .where(events.c.id == numbered.c.id)
        .values(cursor=numbered.c.cursor)
        .returning(events.c.org_id, events.c.cursor)
    )


async def assign_cursors(session: AsyncSession) -> int:
    """Give cursors to committed events that have none (up to ``BATCH``); returns how
    many got one. Two statements whatever the number of events and organisations."""
    if session.get_bind().dialect.name == "postgresql":
        # One assigner at a time (SQLite's writer lock does the same).
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('event feed'))"))
    given = (await session.execute(_number_events())).all()
    if not given:
        return 0
    last: dict[str, int] = {}
    for org_id, cursor in given:
        last[org_id] = max(cursor, last.get(org_id, 0))
    upsert = insert_for(session, EventFeedCounter).values(
        [{"org_id": org_id, "last_cursor": cursor} for org_id, cursor in last.items()]
    )
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[EventFeedCounter.org_id],
            set_={"last_cursor": upsert.excluded.last_cursor},
        )
    )
    return len(given)


async def page_of_events(
    session: AsyncSession, org_id: str, *, after: int, limit: int
) -> list[CallEvent]:
    rows = await session.execute(
        scoped(CallEvent, org_id)
        .where(CallEvent.cursor > after)
        .order_by(CallEvent.cursor)
        .limit(limit)
    )
    return list(rows.scalars())


async def cursor_exists(session: AsyncSession, org_id: str, cursor: int) -> bool:
    found = (
        await session.execute(
            select(func.count())
            .select_from(CallEvent)
            .where(owned_by(CallEvent, org_id), CallEvent.cursor == cursor)
        )
    ).scalar_one()
    return bool(found)
