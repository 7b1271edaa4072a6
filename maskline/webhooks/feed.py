"""The event feed (SPEC §6): cursors given after commit, by one writer per organisation.

An event becomes visible in the feed once it has a cursor. Cursors are handed
out in a transaction that holds the organisation's feed lock, so they only
grow, and a reader that follows ``next_cursor`` sees every event once, in order.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import BigInteger, String, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.scope import owned_by, scoped
from maskline.kit.upsert import insert_for
from maskline.webhooks.models import CallEvent, EventFeedCounter

BATCH = 500


@functools.cache
def _set_cursor() -> Any:
    # The table, not the mapped class: an ORM update of many parameter sets would be
    # read as a bulk update by primary key.
    events = CallEvent.metadata.tables[CallEvent.__tablename__]
    return (
        update(events)
        .where(events.c.id == bindparam("event_id", type_=String()))
        .values(cursor=bindparam("cursor", type_=BigInteger()))
    )


async def assign_cursors(session: AsyncSession) -> int:
    """Give cursors to committed events that have none; returns how many got one."""
    orgs = list(
        (
            await session.execute(
                select(CallEvent.org_id).where(CallEvent.cursor.is_(None)).distinct().limit(50)
            )
        ).scalars()
    )
    assigned = 0
    for org_id in orgs:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"feed:{org_id}"}
            )
        events = list(
            (
                await session.execute(
                    select(CallEvent.id)
                    .where(owned_by(CallEvent, org_id), CallEvent.cursor.is_(None))
                    .order_by(CallEvent.created_at, CallEvent.call_sid, CallEvent.sequence)
                    .limit(BATCH)
                )
            ).scalars()
        )
        if not events:
            continue
        last = (
            await session.execute(
                insert_for(session, EventFeedCounter)
                .values(org_id=org_id, last_cursor=len(events))
                .on_conflict_do_update(
                    index_elements=[EventFeedCounter.org_id],
                    set_={"last_cursor": EventFeedCounter.last_cursor + len(events)},
                )
                .returning(EventFeedCounter.last_cursor)
            )
        ).scalar_one()
        first = last - len(events) + 1
        # One statement for them all, its rows sent together (the driver's executemany).
        await session.execute(
            _set_cursor(),
            [
                {"event_id": event_id, "cursor": first + offset}
                for offset, event_id in enumerate(events)
            ],
        )
        assigned += len(events)
    return assigned


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
