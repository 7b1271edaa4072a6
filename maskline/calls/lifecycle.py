"""Writing a call's state change: the row, its money, its number and its events, together.

One function, used by the engine, the hang-up API and the watchdog, so that
every path to the end of a call settles it the same way, exactly once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Integer,
    String,
    any_,
    bindparam,
    case,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.billing import talktime
from maskline.billing.talktime import Pricing
from maskline.calls import tally
from maskline.calls.flow import CallState, Phase, Status
from maskline.calls.models import TERMINAL_STATUSES, Call
from maskline.calls.schemas import call_data, talk_seconds
from maskline.kit.writer import defer_to_batch
from maskline.numbers.pool import release_number
from maskline.recordings import repository as recordings
from maskline.webhooks.outbox import add_event


async def record_call_event(
    session: AsyncSession, call: Call, event: str, *, public_url: str, now: datetime
) -> None:
    """Store ``event`` for ``call`` in the outbox, with the call object as it now stands
    (SPEC §6)."""
    call.event_seq += 1
    await add_event(
        session,
        org_id=call.org_id,
        event=event,
        call_sid=call.call_sid,
        sequence=call.event_seq,
        data=call_data(call, public_url=public_url),
        webhook_url=call.webhook_url,
        now=now,
    )


def pricing_of(call: Call) -> Pricing:
    return Pricing(
        pulse_sec=call.pulse_sec,
        pulse_price=call.pulse_price_paise,
        max_duration_sec=call.max_duration_sec,
    )


async def load_call(session: AsyncSession, call_sid: str) -> Call:
    """The call's row, locked for this transaction (PostgreSQL; SQLite's writer lock already is)."""
    return (
        await session.execute(select(Call).where(Call.call_sid == call_sid).with_for_update())
    ).scalar_one()


def state_of(call: Call) -> CallState:
    """The flow state as stored (only the fields the row keeps)."""
    phases = {
        "initiated": Phase.DIALLING_A if call.started_at else Phase.ACCEPTED,
        "ringing": Phase.RINGING_A,
        "answered": Phase.DIALLING_B,
        "in-progress": Phase.BRIDGED,
    }
    return CallState(
        phase=phases.get(call.status, Phase.ENDED),
        status=Status(call.status),
        started_at=call.started_at,
        answered_at=call.answered_at,
        bridged_at=call.bridged_at,
        ended_at=call.ended_at,
    )


def _set_state(call: Call, state: CallState, *, events: int) -> tuple[int, int | None]:
    """Set ``state`` and the number of new events on ``call`` (the row's fields only);
    the first new event's sequence number, and the talk time of a call that ended."""
    call.status = state.status.value
    call.started_at = state.started_at
    call.answered_at = state.answered_at
    call.bridged_at = state.bridged_at
    call.ended_at = state.ended_at
    first_sequence = call.event_seq + 1
    call.event_seq += events
    if not state.ended:
        return first_sequence, None
    call.hangup_cause = state.hangup_cause.value if state.hangup_cause else None
    call.hangup_by = state.hangup_by
    call.failed_leg = state.failed_leg.value if state.failed_leg else None
    call.sip_code = state.sip_code
    call.lease_expires_at = None
    talk = talk_seconds(call)
    call.talk_sec = talk or 0
    if call.bridged_at is None:
        call.recording_status = "none"
    return first_sequence, talk


async def apply_state(
    session: AsyncSession,
    call: Call,
    state: CallState,
    *,
    events: list[str],
    public_url: str,
    now: datetime,
) -> None:
    """Store ``state`` on ``call``, a row this transaction has locked; at the end, settle
    and free the number first, so the terminal event carries the final price.

    Every field of the call's row is set before anything is written, so the row is
    written once (one UPDATE) however many statements the change makes.
    """
    with session.no_autoflush:
        first_sequence, talk = _set_state(call, state, events=len(events))
        if state.ended:
            await _finish(session, call, talk_sec=talk, now=now)
        await session.flush()
    await _record_events(session, call, events, first_sequence, public_url=public_url, now=now)


async def _finish(
    session: AsyncSession, call: Call, *, talk_sec: int | None, now: datetime
) -> None:
    """An ended call's money (settled: its row's money fields set), its number (freed),
    its recording (queued) and its day's tallies: the same for every path to the end of
    a call."""
    if call.bridged_at is not None and call.record:
        recordings.enqueue(session, call_sid=call.call_sid, org_id=call.org_id, now=now)
    await talktime.settle(session, call, pricing_of(call), talk_sec=talk_sec, now=now)
    await release_number(session, call.call_sid, call.masked_number, now=now)
    await tally.count_ended_call(session, call)


async def _record_events(
    session: AsyncSession,
    call: Call,
    events: list[str],
    first_sequence: int,
    *,
    public_url: str,
    now: datetime,
) -> None:
    """The change's events, numbered from ``first_sequence``, each with the call as it
    now stands (SPEC §6)."""
    if not events:
        return
    data = call_data(call, public_url=public_url)
    for offset, event in enumerate(events):
        await add_event(
            session,
            org_id=call.org_id,
            event=event,
            call_sid=call.call_sid,
            sequence=first_sequence + offset,
            data=data,
            webhook_url=call.webhook_url,
            now=now,
        )


@functools.cache
def _grant_statement() -> Any:
    calls = Call.metadata.tables[Call.__tablename__]
    return (
        update(calls)
        .where(calls.c.call_sid == bindparam("grant_sid", type_=String()))
        .values(
            granted_pulses=bindparam("grant_pulses", type_=Integer()),
            hold_paise=bindparam("grant_held", type_=calls.c.hold_paise.type),
        )
    )


async def store_grants(conn: AsyncConnection, grants: Sequence[talktime.Grant]) -> None:
    """The calls' new credit, as billing decided it (``talktime.grant_calls``)."""
    await conn.execute(
        _grant_statement(),
        [
            {"grant_sid": g.call_sid, "grant_pulses": g.total, "grant_held": g.held + g.extra}
            for g in grants
        ],
    )


@functools.cache
def _advance_statement(with_dialogs: bool, ending: bool) -> Any:
    values: dict[Any, Any] = {
        Call.status: bindparam("adv_status", type_=String()),
        Call.started_at: bindparam("adv_started_at", type_=Call.started_at.type),
        Call.answered_at: bindparam("adv_answered_at", type_=Call.answered_at.type),
        Call.bridged_at: bindparam("adv_bridged_at", type_=Call.bridged_at.type),
        Call.lease_expires_at: bindparam("adv_lease", type_=Call.lease_expires_at.type),
        Call.heartbeat_at: bindparam("adv_now", type_=Call.heartbeat_at.type),
        Call.event_seq: Call.event_seq + bindparam("adv_events", type_=Integer()),
    }
    if with_dialogs:
        values[Call.sip_dialogs] = bindparam("adv_dialogs", type_=Call.sip_dialogs.type)
    if ending:
        values.update(
            {
                Call.ended_at: bindparam("adv_ended_at", type_=Call.ended_at.type),
                Call.hangup_cause: bindparam("adv_cause", type_=String()),
                Call.hangup_by: bindparam("adv_by", type_=String()),
                Call.failed_leg: bindparam("adv_failed_leg", type_=String()),
                Call.sip_code: bindparam("adv_sip_code", type_=Integer()),
                Call.talk_sec: bindparam("adv_talk_sec", type_=Integer()),
                # A call that never bridged has no recording to make.
                Call.recording_status: case(
                    (bindparam("adv_unbridged", type_=Boolean()), "none"),
                    else_=Call.recording_status,
                ),
            }
        )
    # The table's statement, not the ORM's (whose bulk update and loading of the row
    # were most of the statement's CPU): the row comes back as a detached Call
    # (``_from_row``).
    calls = Call.metadata.tables[Call.__tablename__]
    return (
        update(calls)
        .where(
            calls.c.call_sid == bindparam("adv_sid", type_=String()),
            calls.c.engine_id == bindparam("adv_engine", type_=String()),
            calls.c.status.not_in(TERMINAL_STATUSES),
        )
        .values(values)
        .returning(*(column for _, column in _row_columns()))
    )


@functools.cache
def _row_columns() -> tuple[tuple[str, Any], ...]:
    """Each of the row's attributes and its column."""
    return tuple((attr.key, attr.columns[0]) for attr in inspect(Call).column_attrs)


@functools.cache
def _row_keys() -> tuple[tuple[str, ...], Any]:
    """The row's attribute names, in ``_row_columns``' order, and Call's class manager."""
    return tuple(key for key, _ in _row_columns()), inspect(Call).class_manager


def _from_row(row: Sequence[Any]) -> Call:
    """A Call (in no session) holding ``row``, in ``_row_columns``' order; made without
    the constructor, as ``_copy`` is."""
    keys, manager = _row_keys()
    call: Call = manager.new_instance()
    call.__dict__.update(zip(keys, row, strict=True))
    return call


async def _take(
    session: AsyncSession,
    call_sid: str,
    state: CallState,
    *,
    engine_id: str,
    lease_until: datetime | None,
    dialogs: Mapping[str, object] | None,
    events: int,
    now: datetime,
) -> Call | None:
    """Write a live call's new state in one conditional ``UPDATE … RETURNING``: only
    while ``engine_id`` holds the call and it has not ended. The row as written (a
    Call in no session: nothing flushes it), or None (nothing written)."""
    params: dict[str, Any] = {
        "adv_sid": call_sid,
        "adv_engine": engine_id,
        "adv_status": state.status.value,
        "adv_started_at": state.started_at,
        "adv_answered_at": state.answered_at,
        "adv_bridged_at": state.bridged_at,
        "adv_lease": lease_until,
        "adv_now": now,
        "adv_events": events,
    }
    if dialogs:
        params["adv_dialogs"] = dict(dialogs)
    if state.ended:
        params.update(
            {
                "adv_ended_at": state.ended_at,
                "adv_cause": state.hangup_cause.value if state.hangup_cause else None,
                "adv_by": state.hangup_by,
                "adv_failed_leg": state.failed_leg.value if state.failed_leg else None,
                "adv_sip_code": state.sip_code,
                "adv_talk_sec": talk_seconds(state) or 0,
                "adv_unbridged": state.bridged_at is None,
            }
        )
    statement = _advance_statement(bool(dialogs), state.ended)
    connection = await session.connection()
    row = (await connection.execute(statement, params)).one_or_none()
    return None if row is None else _from_row(row)


async def advance_call(
    session: AsyncSession,
    call_sid: str,
    state: CallState,
    *,
    engine_id: str,
    lease_until: datetime,
    dialogs: Mapping[str, object] | None,
    events: list[str],
    public_url: str,
    now: datetime,
) -> Call | None:
    """Store a live call's step that comes with a grant (the bridge, a chunk renewed:
    the grant is the caller's, decided on the row this returns) as one conditional
    ``UPDATE … RETURNING``, then its events: only while ``engine_id`` holds the call and it has not
    ended. The call as it now stands, or None (nothing written) when it does not."""
    if state.ended:
        raise ValueError("a call's end settles its money: end_call stores it")
    call = await _take(
        session,
        call_sid,
        state,
        engine_id=engine_id,
        lease_until=lease_until,
        dialogs=dialogs,
        events=len(events),
        now=now,
    )
    if call is None:
        return None
    first_sequence = call.event_seq - len(events) + 1
    await _record_events(session, call, events, first_sequence, public_url=public_url, now=now)
    return call


@functools.cache
def _money_statement() -> Any:
    calls = Call.metadata.tables[Call.__tablename__]
    return (
        update(calls)
        .where(calls.c.call_sid == bindparam("money_sid", type_=String()))
        .values(
            hold_paise=bindparam("money_held", type_=calls.c.hold_paise.type),
            billed_pulses=bindparam("money_pulses", type_=Integer()),
            price_paise=bindparam("money_price", type_=calls.c.price_paise.type),
        )
    )


async def store_money(conn: AsyncConnection, calls: Sequence[Any]) -> list[None]:
    """The ended calls' money fields, as their settlement set them (one executemany)."""
    ended: Sequence[Call] = calls
    await conn.execute(
        _money_statement(),
        [
            {
                "money_sid": call.call_sid,
                "money_held": call.hold_paise,
                "money_pulses": call.billed_pulses,
                "money_price": call.price_paise,
            }
            for call in ended
        ],
    )
    return [None] * len(ended)


async def end_call(
    session: AsyncSession,
    call_sid: str,
    state: CallState,
    *,
    engine_id: str,
    dialogs: Mapping[str, object] | None,
    events: list[str],
    public_url: str,
    now: datetime,
) -> Call | None:
    """Store the end of a live call that ``engine_id`` holds: its row in one conditional
    ``UPDATE … RETURNING``; its settlement, number, money fields and events as the
    batch's steps (``apply_state`` does the same for a call already locked). The row
    as it now reads, or None (nothing written) when the engine no longer holds it or it
    has ended."""
    if not state.ended:
        raise ValueError("end_call stores a call's end")
    call = await _take(
        session,
        call_sid,
        state,
        engine_id=engine_id,
        lease_until=None,
        dialogs=dialogs,
        events=len(events),
        now=now,
    )
    if call is None:
        return None
    # Its money fields are set below and written by the batch (the row is in no
    # session: never by a flush).
    await _finish(session, call, talk_sec=talk_seconds(call), now=now)
    if not defer_to_batch(session, store_money, call):
        await store_money(await session.connection(), [call])
    first_sequence = call.event_seq - len(events) + 1
    await _record_events(session, call, events, first_sequence, public_url=public_url, now=now)
    return call


class LeaseLost(Exception):
    """Another engine took the call over (our lease had lapsed), or it has ended: stop
    touching it."""


# The row's fields an engine's step writes; at the end, its money's too.
_LIVE_FIELDS = (
    "status",
    "started_at",
    "answered_at",
    "bridged_at",
    "lease_expires_at",
    "heartbeat_at",
    "event_seq",
    "sip_dialogs",
)


@dataclass(frozen=True, slots=True)
class Change:
    """A step of a live call that ``engine_id`` holds, as the row will read after it."""

    call: Call
    engine_id: str


def _copy(call: Call) -> Call:
    """A copy of the row (never added to a session): what the step changes, so that a
    batch run again starts from the row as it was.

    Made without the constructor, whose instrumented set of each of the row's columns
    cost 125 µs a copy (19 µs so), three copies a call in the engine."""
    return _from_row([getattr(call, key) for key in _row_keys()[0]])


@functools.cache
def _held_statement(dialect: str) -> Any:
    calls = Call.metadata.tables[Call.__tablename__]
    if dialect == "postgresql":
        # One statement text for any number of calls (one prepared statement).
        among = calls.c.call_sid == any_(bindparam("held_sids", type_=ARRAY(String())))
    else:
        among = calls.c.call_sid.in_(bindparam("held_sids", expanding=True))
    statement = (
        select(calls.c.call_sid, calls.c.engine_id)
        .where(among, calls.c.status.not_in(TERMINAL_STATUSES))
        .order_by(calls.c.call_sid)
    )
    # Locked until the commit (in one order: two batches never wait on each other in a
    # cycle), so that no watchdog takes them over between this check and the write.
    return statement.with_for_update() if dialect == "postgresql" else statement


def _bind_type(column: Any) -> Any:
    # None in a JSON column is SQL NULL here, as the ORM leaves an unset one.
    return JSON(none_as_null=True) if isinstance(column.type, JSON) else column.type


@functools.cache
def _change_statement() -> Any:
    calls = Call.metadata.tables[Call.__tablename__]
    columns = {attr.key: attr.columns[0] for attr in inspect(Call).column_attrs}
    return (
        update(calls)
        .where(
            calls.c.call_sid == bindparam("ch_sid", type_=String()),
            calls.c.engine_id == bindparam("ch_engine", type_=String()),
        )
        .values(
            {
                columns[field].name: bindparam(f"ch_{field}", type_=_bind_type(columns[field]))
                for field in _LIVE_FIELDS
            }
        )
    )


async def store_changes(
    conn: AsyncConnection, changes: Sequence[Any]
) -> list[BaseException | None]:
    """The batch's step for ``step_call``: which of the calls their engines still hold
    (one read, locked on PostgreSQL), a refusal (``LeaseLost``) for the others, and when
    none is refused, every row written in one executemany per kind of step."""
    asks: Sequence[Change] = changes
    rows = await conn.execute(
        _held_statement(conn.dialect.name), {"held_sids": [c.call.call_sid for c in asks]}
    )
    held: dict[str, str | None] = {sid: engine for sid, engine in rows}
    outcomes: list[BaseException | None] = [
        None if held.get(c.call.call_sid) == c.engine_id else LeaseLost(c.call.call_sid)
        for c in asks
    ]
    if any(outcomes):
        return outcomes  # the batch runs again without them: nothing is written now
    await conn.execute(
        _change_statement(),
        [
            {
                "ch_sid": c.call.call_sid,
                "ch_engine": c.engine_id,
                **{f"ch_{field}": getattr(c.call, field) for field in _LIVE_FIELDS},
            }
            for c in asks
        ],
    )
    return outcomes


async def step_call(
    session: AsyncSession,
    row: Call,
    state: CallState,
    *,
    engine_id: str,
    lease_until: datetime,
    dialogs: Mapping[str, object] | None,
    events: list[str],
    public_url: str,
    now: datetime,
) -> Call:
    """Store a step of a live call that moves no money (dialled, ringing, answered) from
    ``row``, the row as its engine, ``engine_id``, last stored it (only its engine
    writes a live call's state): written by the batch with every other call's step
    (``store_changes``), events too; no statement of its own. The row as it now reads
    (``row`` is left as it was); ``LeaseLost``, and nothing written, when the engine no
    longer holds the call or it has ended."""
    if state.ended:
        raise ValueError("a call's end settles its money: end_call stores it")
    call = _copy(row)
    first_sequence, _ = _set_state(call, state, events=len(events))
    call.heartbeat_at = now
    call.lease_expires_at = lease_until
    if dialogs:
        call.sip_dialogs = dict(dialogs)
    change = Change(call, engine_id)
    if not defer_to_batch(session, store_changes, change):
        (refusal,) = await store_changes(await session.connection(), [change])
        if refusal is not None:
            raise refusal
    await _record_events(session, call, events, first_sequence, public_url=public_url, now=now)
    return call
