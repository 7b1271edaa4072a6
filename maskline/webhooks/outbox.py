"""Writing events into the outbox, in the transaction of the change that caused them.

Each event gets one delivery row for its target: the call's ``webhook_url`` if
it has one, else the organisation's endpoint (paused while that endpoint is
disabled by a 410). No target, no delivery: the event is still in the feed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    String,
    Table,
    Text,
    bindparam,
    case,
    column,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import Insert

from maskline.kit.clock import rfc3339
from maskline.kit.db import Base
from maskline.kit.ids import new_id
from maskline.kit.scope import owned_by
from maskline.kit.writer import defer_to_batch
from maskline.webhooks.models import CallEvent, WebhookDelivery, WebhookEndpoint


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record_event`` stored: the event, and its delivery when it has a target."""

    event_id: str
    payload: str
    delivery_id: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class Prior:
    """The change's own row (a new call's), to insert with its event: its table and its
    values by column name."""

    table: Table
    values: dict[str, Any]


def _bound(table: Table, prefix: str, names: Sequence[str]) -> dict[str, Any]:
    return {name: bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in names}


_EVENT = ("id", "org_id", "call_sid", "sequence", "event", "payload", "created_at")
_DELIVERY = (
    "id",
    "org_id",
    "event_id",
    "event",
    "call_sid",
    "sequence",
    "attempts",
    "next_attempt_at",
    "created_at",
)


@functools.cache
def _event_insert() -> Insert:
    table = _table(CallEvent)
    return insert(table).values(_bound(table, "e_", _EVENT))


@functools.cache
def _delivery_insert(to_endpoint: bool, *, returning: bool = True) -> Insert:
    """The event's delivery: to the call's own URL, else to the organisation's endpoint
    when it has a URL (paused while a 410 disabled it), read by the insert itself."""
    table = _table(WebhookDelivery)
    fixed = _bound(table, "d_", _DELIVERY)
    if not to_endpoint:
        statement = insert(table).values(
            **fixed,
            url=bindparam("d_url", type_=table.c.url.type),
            to_endpoint=False,
            status="pending",
        )
    else:
        endpoint = select(
            *(value.label(name) for name, value in fixed.items()),
            WebhookEndpoint.url.label("url"),
            literal(True, Boolean()).label("to_endpoint"),
            case((WebhookEndpoint.enabled, "pending"), else_="paused").label("status"),
        ).where(
            owned_by(WebhookEndpoint, bindparam("d_org_id")),
            WebhookEndpoint.url.is_not(None),
            WebhookEndpoint.url != "",
        )
        # FOR SHARE (PostgreSQL): a 410 pausing the endpoint holds its row FOR UPDATE
        # while it pauses the pending deliveries. Without this lock, an event recorded
        # meanwhile read the endpoint as enabled and left a pending delivery that the
        # pause never saw, stuck behind the paused ones for good. With it, the event
        # waits for the pause and reads it, or the pause waits for the event's commit
        # and pauses its delivery too. SQLite's single writer already orders them.
        endpoint = endpoint.with_for_update(read=True)
        statement = insert(table).from_select([*fixed, "url", "to_endpoint", "status"], endpoint)
    return statement.returning(table.c.id, table.c.url) if returning else statement


def _table(model: type[Base]) -> Table:
    return model.metadata.tables[model.__tablename__]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event to store (``outgoing``, then ``write_events``): its row's and its
    delivery's values (and the change's own insert to write before it)."""

    event_id: str
    payload: str
    of_event: dict[str, Any]
    of_delivery: dict[str, Any]
    to_endpoint: bool
    prior: Prior | None


def outgoing(
    *,
    org_id: str,
    event: str,
    call_sid: str | None,
    sequence: int,
    data: dict[str, Any],
    webhook_url: str | None,
    now: datetime,
    prior: Prior | None,
) -> Outgoing:
    event_id = new_id("evt")
    payload = orjson.dumps(
        {
            "id": event_id,
            "event": event,
            "call_sid": call_sid,
            "created_at": rfc3339(now),
            "sequence": sequence,
            "data": data,
        }
    ).decode()
    of_event: dict[str, Any] = {
        "e_id": event_id,
        "e_org_id": org_id,
        "e_call_sid": call_sid,
        "e_sequence": sequence,
        "e_event": event,
        "e_payload": payload,
        "e_created_at": now,
    }
    of_delivery: dict[str, Any] = {
        "d_id": new_id("dlv"),
        "d_org_id": org_id,
        "d_event_id": event_id,
        "d_event": event,
        "d_call_sid": call_sid,
        "d_sequence": sequence,
        "d_attempts": 0,
        "d_next_attempt_at": now,
        "d_created_at": now,
    }
    to_endpoint = webhook_url is None
    if not to_endpoint:
        of_delivery["d_url"] = webhook_url
    return Outgoing(event_id, payload, of_event, of_delivery, to_endpoint, prior)


async def record_event(
    session: AsyncSession,
    *,
    org_id: str,
    event: str,
    call_sid: str | None,
    sequence: int,
    data: dict[str, Any],
    webhook_url: str | None,
    now: datetime,
) -> Recorded:
    """Store the event and its delivery now, outside any batch step, and say what was
    stored: for the events that stand alone (``webhook.test`` from the CLI and the
    portal), whose caller shows the delivery."""
    out = outgoing(
        org_id=org_id,
        event=event,
        call_sid=call_sid,
        sequence=sequence,
        data=data,
        webhook_url=webhook_url,
        now=now,
        prior=None,
    )
    await session.execute(_event_insert(), out.of_event)
    row = (await session.execute(_delivery_insert(out.to_endpoint), out.of_delivery)).one_or_none()
    return Recorded(
        event_id=out.event_id,
        payload=out.payload,
        delivery_id=None if row is None else row.id,
        url=None if row is None else row.url,
    )


async def add_event(
    session: AsyncSession,
    *,
    org_id: str,
    event: str,
    call_sid: str | None,
    sequence: int,
    data: dict[str, Any],
    webhook_url: str | None,
    now: datetime,
    prior: Prior | None = None,
) -> None:
    """Store the event and its delivery as ``record_event`` does, but in a batch
    (kit/writer.py) together with every other unit's events, just before its commit:
    a few statements for the whole batch instead of one or three per event."""
    out = outgoing(
        org_id=org_id,
        event=event,
        call_sid=call_sid,
        sequence=sequence,
        data=data,
        webhook_url=webhook_url,
        now=now,
        prior=prior,
    )
    if not defer_to_batch(session, write_events, out):
        await session.flush()
        await write_events(await session.connection(), [out])


async def write_events(conn: AsyncConnection, events: Sequence[Any]) -> list[None]:
    """The batch's step for ``add_event``: the changes' own rows (grouped by table, in
    order), then every event, then their deliveries by kind of target.

    On PostgreSQL, one statement for all (``_at_once``); on SQLite, in process, an
    executemany a table."""
    outs: Sequence[Outgoing] = events
    priors: dict[Table, list[dict[str, Any]]] = {}
    for out in outs:
        if out.prior is not None:
            priors.setdefault(out.prior.table, []).append(out.prior.values)
    if conn.dialect.name == "postgresql":
        tables = tuple(priors)
        params = {
            f"prior_{n}": _json_rows([_documents_as_text(table, row) for row in rows])
            for n, (table, rows) in enumerate(priors.items())
        }
        for to_endpoint in (False, True):
            params[_DELIVERIES[to_endpoint]] = _json_rows(
                [out.of_delivery for out in outs if out.to_endpoint is to_endpoint]
            )
        params["events"] = _json_rows([out.of_event for out in outs])
        await conn.execute(_at_once(tables), params)
        return [None] * len(outs)
    for table, rows in priors.items():
        await conn.execute(insert(table), rows)
    await conn.execute(_event_insert(), [out.of_event for out in outs])
    for to_endpoint in (False, True):
        deliveries = [out.of_delivery for out in outs if out.to_endpoint is to_endpoint]
        if deliveries:
            await conn.execute(_delivery_insert(to_endpoint, returning=False), deliveries)
    return [None] * len(outs)


# The parameters of ``_at_once`` with each kind of delivery's rows.
_DELIVERIES = {False: "to_urls", True: "to_endpoints"}


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            # As ``UTCDateTime`` refuses it: PostgreSQL would read it in its own zone.
            raise ValueError("naive datetime given to a UTC column")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


@functools.cache
def _documents(table: Table) -> frozenset[str]:
    """``table``'s JSON columns."""
    return frozenset(c.name for c in table.columns if isinstance(c.type, JSON))


def _documents_as_text(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its JSON columns' values as the text SQLAlchemy's ``JSON`` would bind
    (``None`` as JSON ``null``, as it binds it), which ``_rows`` reads as text and casts:
    read as ``json`` inside the array, a ``\u0000`` in a string fails the statement
    (PostgreSQL cannot unescape it), and with it the whole batch."""
    documents = _documents(table)
    if not documents:
        return row
    return {k: json.dumps(v) if k in documents else v for k, v in row.items()}


def _json_rows(rows: list[dict[str, Any]]) -> str:
    # Datetimes through _json_value, which refuses a naive one; keys may be column
    # names, which are str's subclass quoted_name.
    options = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
    try:
        return orjson.dumps(rows, default=_json_value, option=options).decode()
    except orjson.JSONEncodeError as exc:
        if isinstance(exc.__cause__, ValueError):
            raise exc.__cause__ from None  # _json_value's own refusal, as it said it
        raise


def _rows(table: Table, names: Sequence[tuple[str, str]], param: str, alias: str) -> Any:
    """Rows given as one JSON array of objects (``json_to_recordset``): each ``(key,
    column)`` of ``names`` read from the objects' ``key`` with the type of ``table``'s
    ``column``."""
    documents = _documents(table)
    return (
        func.json_to_recordset(bindparam(param, type_=String()).cast(JSON()))
        .table_valued(
            *(
                column(key, Text() if name in documents else table.c[name].type)
                for key, name in names
            )
        )
        .render_derived(name=alias, with_types=True)
    )


@functools.cache
def _at_once(prior_tables: tuple[Table, ...]) -> Insert:
    """PostgreSQL: ``write_events``' inserts as one statement: the changes' own rows
    (``prior_N``, one parameter a table), the events (``events``) and the deliveries to
    the call's own URL (``to_urls``) as data-modifying CTEs of the insert of the
    deliveries to the organisation's endpoint (``to_endpoints``). Each parameter is
    the rows as one JSON array: one message to send, however many rows. Foreign keys
    are checked at the statement's end, so a delivery finds its event."""
    ctes = []
    for n, table in enumerate(prior_tables):
        names = [(c.name, c.name) for c in table.columns if c.name != "id"]
        rows = _rows(table, names, f"prior_{n}", f"prior_rows_{n}")
        documents = _documents(table)
        values = [
            rows.c[key].cast(table.c[name].type) if name in documents else rows.c[key]
            for key, name in names
        ]
        ctes.append(
            insert(table).from_select([c for _, c in names], select(*values)).cte(f"prior_{n}")
        )
    events = _table(CallEvent)
    names = [(f"e_{name}", name) for name in _EVENT]
    rows = _rows(events, names, "events", "event_rows")
    ctes.append(insert(events).from_select(list(_EVENT), select(rows)).cte("events"))
    deliveries = _table(WebhookDelivery)
    targets = [*_DELIVERY, "url", "to_endpoint", "status"]
    names = [(f"d_{name}", name) for name in _DELIVERY]
    rows = _rows(deliveries, [*names, ("d_url", "url")], _DELIVERIES[False], "url_rows")
    to_urls = select(rows, literal(False, Boolean()), literal("pending"))
    ctes.append(insert(deliveries).from_select(targets, to_urls).cte("to_urls"))
    rows = _rows(deliveries, names, _DELIVERIES[True], "endpoint_rows")
    # FOR SHARE of the endpoint: as ``_delivery_insert``'s.
    to_endpoints = (
        select(
            rows,
            WebhookEndpoint.url,
            literal(True, Boolean()),
            case((WebhookEndpoint.enabled, "pending"), else_="paused"),
        )
        .join(WebhookEndpoint, owned_by(WebhookEndpoint, rows.c.d_org_id))
        .where(WebhookEndpoint.url.is_not(None), WebhookEndpoint.url != "")
        .with_for_update(read=True, of=WebhookEndpoint)
    )
    return insert(deliveries).from_select(targets, to_endpoints).add_cte(*ctes)
