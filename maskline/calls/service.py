"""Placing, reading and hanging up calls (SPEC §3)."""

from __future__ import annotations

import functools
import json
import uuid
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import String, bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing import wallet
from maskline.calls import idempotency, repository, tally
from maskline.calls.flow import EVENT_NAMES, Emit, HangupRequested, Status, step
from maskline.calls.idempotency import StoredResponse
from maskline.calls.intake import NewCall
from maskline.calls.lifecycle import apply_state, state_of
from maskline.calls.models import TERMINAL_STATUSES, Call
from maskline.calls.schemas import CallOut
from maskline.errors import InsufficientBalance, NoMaskedNumber, NotFound, RateLimited
from maskline.kit.ids import new_call_sid
from maskline.kit.india import ist_date
from maskline.kit.money import pulse_price_paise
from maskline.kit.scope import scoped
from maskline.kit.writer import WALLET_STAGE, defer_to_batch
from maskline.numbers import pool
from maskline.numbers.pool import lease_number
from maskline.webhooks.outbox import add_event

TOO_MANY_LIVE = "Too many live calls for this organisation."
API_OWNER = "api"


@functools.cache
def _lease_statement(dialect: str) -> Any:
    """The number pool's pick-and-lease statement, with the pair's last number first."""
    previous = repository.pair_number(
        bindparam("lease_org_id", type_=String()),
        bindparam("lease_party_a", type_=String()),
        bindparam("lease_party_b", type_=String()),
    )
    return pool.lease_statement(dialect, previous)


class Terms(wallet.Tariff, Protocol):
    """The organisation's terms a new call is placed on (the authenticated key's
    cached copy: at most a second old)."""

    @property
    def is_sandbox(self) -> bool: ...

    @property
    def max_live_calls(self) -> int: ...


async def create_call(
    session: AsyncSession,
    org_id: str,
    org: Terms,
    request: NewCall,
    *,
    default_carrier: str,
    public_url: str,
    now: datetime,
    pair_key: str,
    idempotency_key: str | None = None,
    idempotency_wait_sec: float = 10.0,
) -> StoredResponse:
    """Accept a call: hold one minute, lease a masked number, store it and ``call.initiated``.

    Checks run in SPEC §1's order: idempotency (409), balance (402), number pool (503).
    ``pair_key`` is the keyed digest of the A–B pair (``tally.pair_text``).
    """
    if idempotency_key is not None:
        stored = await idempotency.claim_key(
            session,
            org_id,
            idempotency_key,
            request.fingerprint(),
            now=now,
            wait_sec=idempotency_wait_sec,
        )
        if stored is not None:
            return stored
    minute = wallet.minute_price_paise(org)
    call_sid = new_call_sid()
    masked = await lease_number(
        session,
        _lease_statement(session.get_bind().dialect.name),
        org_id=org_id,
        party_a=request.party_a,
        party_b=request.party_b,
        call_sid=call_sid,
    )
    if masked is None:
        # SPEC §1's order: a call that could not be paid for is 402 before it is 503.
        _refuse(
            await wallet.could_hold_call(session, org_id, minute, max_live_calls=org.max_live_calls)
        )
        raise NoMaskedNumber()
    call = Call(
        call_sid=call_sid,
        org_id=org_id,
        carrier="sim" if org.is_sandbox else default_carrier,
        party_a=request.party_a,
        party_b=request.party_b,
        masked_number=masked,
        status=Status.INITIATED.value,
        max_duration_sec=request.max_duration_sec,
        ring_timeout_sec=request.ring_timeout_sec,
        record=request.record,
        webhook_url=request.webhook_url,
        call_metadata=request.metadata,
        created_at=now,
        rate_paise=org.rate_paise,
        pulse_sec=org.pulse_sec,
        pulse_price_paise=pulse_price_paise(org.rate_paise, org.pulse_sec),
        hold_paise=minute,
        granted_pulses=0,
        billed_pulses=0,
        price_paise=0,
        talk_sec=0,
        recording_status="pending" if request.record else "none",
        event_seq=1,
    )
    data = CallOut.build(call, public_url=public_url).model_dump(mode="json")
    # The call's row, its event and the event's delivery: written with every other new
    # call's of the batch, a few statements for all of them (kit/writer.py).
    await add_event(
        session,
        org_id=org_id,
        event=EVENT_NAMES[Status.INITIATED],
        call_sid=call_sid,
        sequence=call.event_seq,
        data=data,
        webhook_url=call.webhook_url,
        now=now,
        prior=repository.insert_call(call),
    )
    # Counted before the hold, on a shard of the tallies drawn for the batch
    # (calls/tally.py): every batch locks its tally rows before the organisation's wallet
    # row (no lock cycle through them), and the wallet row's locked stretch is the hold
    # and the commit alone.
    await tally.count_new_call(session, tally.NewCall(org_id, ist_date(now), pair_key))
    # The row every call of the organisation shares (its wallet) is written last, so it
    # is held for the least time before the commit. The balance and the live-call cap
    # are checked and taken by the same statement: both hold exactly under concurrency.
    # A refusal rolls back everything above.
    # In a batch (kit/writer.py), the hold is taken for all its new calls at once, just
    # before the commit, so the wallet row is locked for the commit alone.
    ask = wallet.CallHoldAsk(org_id, minute, org.max_live_calls, now, _refusal)
    if not defer_to_batch(session, wallet.hold_calls, ask, stage=WALLET_STAGE):
        (refusal,) = await wallet.hold_calls(await session.connection(), [ask])
        if refusal is not None:
            raise refusal
    response = StoredResponse(
        201, json.dumps({"data": data}, separators=(",", ":"), ensure_ascii=False)
    )
    if idempotency_key is not None:
        await idempotency.store_response(session, org_id, idempotency_key, response)
    return response


def _refusal(hold: wallet.CallHold) -> BaseException:
    """The error for a new call that cannot be held (402 before 429, SPEC §1)."""
    if hold is wallet.CallHold.NO_BALANCE:
        return InsufficientBalance()
    return RateLimited(TOO_MANY_LIVE, headers={"Retry-After": "5"})


def _refuse(hold: wallet.CallHold) -> None:
    if hold is not wallet.CallHold.HELD:
        raise _refusal(hold)


def _valid_sid(call_sid: str) -> bool:
    try:
        return str(uuid.UUID(call_sid)) == call_sid.lower()
    except ValueError:
        return False


async def find_call(session: AsyncSession, org_id: str, call_sid: str) -> Call:
    """The organisation's call, or 404 (also for a malformed sid or another org's call)."""
    if not _valid_sid(call_sid):
        raise NotFound("No call with this call_sid.")
    call = (
        await session.execute(scoped(Call, org_id).where(Call.call_sid == call_sid.lower()))
    ).scalar_one_or_none()
    if call is None:
        raise NotFound("No call with this call_sid.")
    return call


async def request_hangup(
    session: AsyncSession, org_id: str, call_sid: str, *, public_url: str, now: datetime
) -> bool:
    """Ask for a live call to end. Returns True when the engine must act on it.

    A call no engine has claimed yet is ended here and now; a claimed one is
    flagged for its engine, which hangs up the legs.
    """
    call = await find_call(session, org_id, call_sid)
    if call.status in TERMINAL_STATUSES:
        return False
    taken = (
        await session.execute(
            update(Call)
            .where(Call.id == call.id, Call.engine_id.is_(None), Call.status == "initiated")
            .values(engine_id=API_OWNER)
            .returning(Call.id)
        )
    ).scalar_one_or_none()
    if taken is None:
        call.hangup_requested_at = call.hangup_requested_at or now
        await session.flush()
        return True
    await session.refresh(call)
    ended, commands = step(state_of(call), HangupRequested(now))
    await apply_state(
        session,
        call,
        ended,
        events=[c.event for c in commands if isinstance(c, Emit)],
        public_url=public_url,
        now=now,
    )
    return False
