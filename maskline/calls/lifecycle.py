"""Writing a call's state change: the row, its money, its number and its events, together.

One function, used by the engine, the hang-up API and the watchdog, so that
every path to the end of a call settles it the same way, exactly once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.billing import talktime
from maskline.billing.talktime import Pricing
from maskline.calls import tally
from maskline.calls.flow import CallState, Phase, Status
from maskline.calls.models import TERMINAL_STATUSES, Call
from maskline.calls.schemas import CallOut, talk_seconds
from maskline.numbers.pool import release_number
from maskline.recordings import repository as recordings
from maskline.webhooks.outbox import record_event


async def record_call_event(
    session: AsyncSession, call: Call, event: str, *, public_url: str, now: datetime
) -> None:
    """Store ``event`` for ``call`` in the outbox, with the call object as it now stands
    (SPEC §6)."""
    call.event_seq += 1
    await record_event(
        session,
        org_id=call.org_id,
        event=event,
        call_sid=call.call_sid,
        sequence=call.event_seq,
        data=CallOut.build(call, public_url=public_url).model_dump(mode="json"),
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


async def apply_state(
    session: AsyncSession,
    call: Call,
    state: CallState,
    *,
    events: list[str],
    public_url: str,
    now: datetime,
) -> None:
    """Store ``state`` on ``call``; at the end, settle and free the number first, so the
    terminal event carries the final price.

    Every field of the call's row is set before anything is written, so the row is
    written once (one UPDATE) however many statements the change makes.
    """
    with session.no_autoflush:
        call.status = state.status.value
        call.started_at = state.started_at
        call.answered_at = state.answered_at
        call.bridged_at = state.bridged_at
        call.ended_at = state.ended_at
        first_sequence = call.event_seq + 1
        call.event_seq += len(events)
        if state.ended:
            call.hangup_cause = state.hangup_cause.value if state.hangup_cause else None
            call.hangup_by = state.hangup_by
            call.failed_leg = state.failed_leg.value if state.failed_leg else None
            call.sip_code = state.sip_code
            call.lease_expires_at = None
            talk = talk_seconds(call)
            call.talk_sec = talk or 0
            if call.bridged_at is None:
                call.recording_status = "none"
            elif call.record:
                recordings.enqueue(session, call_sid=call.call_sid, org_id=call.org_id, now=now)
            await talktime.settle(session, call, pricing_of(call), talk_sec=talk, now=now)
            await release_number(session, call.call_sid, now=now)
            await tally.count_ended_call(session, call)
        await session.flush()
    await _record_events(session, call, events, first_sequence, public_url=public_url, now=now)


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
    data = CallOut.build(call, public_url=public_url).model_dump(mode="json")
    for offset, event in enumerate(events):
        await record_event(
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
def _advance_statement(with_dialogs: bool) -> Any:
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
    return (
        update(Call)
        .where(
            Call.call_sid == bindparam("adv_sid", type_=String()),
            Call.engine_id == bindparam("adv_engine", type_=String()),
            Call.status.not_in(TERMINAL_STATUSES),
        )
        .values(values)
        .returning(Call)
        .execution_options(synchronize_session=False)
    )


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
) -> bool:
    """Store a live call's step that moves no money (dialled, ringing, answered) as one
    conditional ``UPDATE … RETURNING``, then its events: only while ``engine_id`` holds
    the call and it has not ended. False, and nothing written, when it does not."""
    if state.ended:
        raise ValueError("a call's end settles its money: apply_state stores it")
    params: dict[str, Any] = {
        "adv_sid": call_sid,
        "adv_engine": engine_id,
        "adv_status": state.status.value,
        "adv_started_at": state.started_at,
        "adv_answered_at": state.answered_at,
        "adv_bridged_at": state.bridged_at,
        "adv_lease": lease_until,
        "adv_now": now,
        "adv_events": len(events),
    }
    if dialogs:
        params["adv_dialogs"] = dict(dialogs)
    call = (
        (await session.execute(_advance_statement(bool(dialogs)), params)).scalars().one_or_none()
    )
    if call is None:
        return False
    first_sequence = call.event_seq - len(events) + 1
    await _record_events(session, call, events, first_sequence, public_url=public_url, now=now)
    return True
