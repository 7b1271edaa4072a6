"""Placing, reading and hanging up calls (SPEC §3)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Protocol

import orjson
from sqlalchemy import String, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.billing import wallet
from maskline.calls import idempotency, repository, tally
from maskline.calls.flow import EVENT_NAMES, Emit, HangupRequested, Status, step
from maskline.calls.idempotency import StoredResponse
from maskline.calls.intake import NewCall
from maskline.calls.lifecycle import apply_state, state_of
from maskline.calls.models import TERMINAL_STATUSES, Call
from maskline.calls.schemas import call_data
from maskline.errors import InsufficientBalance, NoMaskedNumber, NotFound, RateLimited
from maskline.kit.ids import new_call_sid
from maskline.kit.india import ist_date
from maskline.kit.money import pulse_price_paise
from maskline.kit.scope import scoped
from maskline.kit.writer import WALLET_STAGE, defer_to_batch
from maskline.numbers import pool
from maskline.numbers.pool import lease_number
from maskline.webhooks.outbox import Outgoing, outgoing, write_events

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


@functools.cache
def _lease_many_statement() -> Any:
    return pool.lease_many_statement(repository.pair_number)


class LeaseAlone(Exception):
    """The batch could not lease this new call's number together with the others' (a
    party shared with another call of the batch or of a concurrent one, or no number
    free): the call is placed again in a unit of its own, which leases with every
    fallback and tells 402 from 503 (``create_call(lease_now=True)``)."""


@dataclass(eq=False, slots=True)
class Accepted:
    """A POST's answer: known when its unit ran, or once its batch leased the call's
    number (``place_calls``), before the batch commits."""

    stored: StoredResponse | None = None

    def response(self) -> StoredResponse:
        if self.stored is None:
            raise RuntimeError("the call's batch did not place it")
        return self.stored


@dataclass(eq=False, slots=True)
class _Placing:
    """A new call whose number its batch leases (``place_calls``)."""

    call: SimpleNamespace  # repository.new_call
    public_url: str
    now: datetime
    idempotency_key: str | None
    accepted: Accepted


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
    lease_now: bool = False,
) -> Accepted:
    """Accept a call: hold one minute, lease a masked number, store it and ``call.initiated``.

    Checks run in SPEC §1's order: idempotency (409), balance (402), number pool (503).
    ``pair_key`` is the keyed digest of the A–B pair (``tally.pair_text``).

    In a batch (kit/writer.py) the number is leased with every other new call's of the
    batch, in one statement (``place_calls``), unless ``lease_now``; when the batch cannot
    lease it, the caller gets ``LeaseAlone`` and places the call again with ``lease_now``.
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
            return Accepted(stored)
    minute = wallet.minute_price_paise(org)
    call = repository.new_call(
        call_sid=new_call_sid(),
        org_id=org_id,
        carrier="sim" if org.is_sandbox else default_carrier,
        party_a=request.party_a,
        party_b=request.party_b,
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
    placing = _Placing(call, public_url, now, idempotency_key, Accepted())
    # The call's row, its event and the event's delivery are written with the number's
    # lease, with every other new call's of the batch: a few statements for all of them.
    if lease_now or not defer_to_batch(session, place_calls, placing):
        masked = await lease_number(
            session,
            _lease_statement(session.get_bind().dialect.name),
            org_id=org_id,
            party_a=request.party_a,
            party_b=request.party_b,
            call_sid=call.call_sid,
        )
        if masked is None:
            # SPEC §1's order: a call that could not be paid for is 402 before it is 503.
            _refuse(
                await wallet.could_hold_call(
                    session, org_id, minute, max_live_calls=org.max_live_calls
                )
            )
            raise NoMaskedNumber()
        call.masked_number = masked
        await session.flush()  # the Idempotency-Key's claim, before the answer it keeps
        await _store_placed(await session.connection(), [placing])
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
    return placing.accepted


def _placed(placing: _Placing) -> Outgoing:
    """A call with its number: its answer, and its ``call.initiated`` to store after its
    row."""
    call = placing.call
    data = call_data(call, public_url=placing.public_url)
    placing.accepted.stored = StoredResponse(201, orjson.dumps({"data": data}).decode())
    return outgoing(
        org_id=call.org_id,
        event=EVENT_NAMES[Status.INITIATED],
        call_sid=call.call_sid,
        sequence=call.event_seq,
        data=data,
        webhook_url=call.webhook_url,
        now=placing.now,
        prior=repository.insert_call(call),
    )


async def place_calls(conn: AsyncConnection, asks: Sequence[Any]) -> list[BaseException | None]:
    """The batch's step for its new calls: their numbers leased in one statement, then
    their rows, events and deliveries (``write_events``) and their Idempotency-Keys'
    answers. A call whose number could not be leased with the others' is refused with
    ``LeaseAlone`` (the batch runs again without it)."""
    placings: Sequence[_Placing] = asks
    numbers = await pool.lease_numbers(
        conn,
        [
            pool.LeaseAsk(p.call.org_id, p.call.party_a, p.call.party_b, p.call.call_sid)
            for p in placings
        ],
        one=_lease_statement(conn.dialect.name),
        many=_lease_many_statement(),
    )
    refusals: list[BaseException | None] = []
    for placing, number in zip(placings, numbers, strict=True):
        if number is None:
            refusals.append(LeaseAlone())
        else:
            placing.call.masked_number = number
            refusals.append(None)
    if any(refusals):
        # The batch runs again without the refused: nothing more to write in this run.
        return refusals
    await _store_placed(conn, placings)
    return refusals


async def _store_placed(conn: AsyncConnection, placings: Sequence[_Placing]) -> None:
    """Calls with their numbers: their rows, ``call.initiated`` events and deliveries
    (``write_events``), and the answers stored under their Idempotency-Keys."""
    await write_events(conn, [_placed(placing) for placing in placings])
    for placing in placings:
        if placing.idempotency_key is not None:
            await idempotency.store_response(
                conn, placing.call.org_id, placing.idempotency_key, placing.accepted.response()
            )


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
