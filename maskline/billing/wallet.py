"""The prepaid wallet: conditional updates of one row plus an append-only ledger.

Every function here is a single conditional statement on the wallet row, so
concurrent calls can never overdraw it (PostgreSQL's row lock re-checks the
condition; SQLite's single writer serialises it). Each change to the balance
writes its ledger entry in the same transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from sqlalchemy import BigInteger, Integer, String, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.billing.models import LedgerEntry, Wallet
from maskline.kit.money import pulse_price_paise
from maskline.kit.scope import owned_by, scoped
from maskline.kit.writer import WALLET_STAGE, defer_to_batch

LOW_BALANCE_MINUTES = 10


class Tariff(Protocol):
    """What a price is made of: an organisation's row or its cached call terms."""

    @property
    def rate_paise(self) -> int: ...

    @property
    def pulse_sec(self) -> int: ...


def minute_price_paise(org: Tariff) -> int:
    """What one minute of talk costs: the pulses that cover 60 s, at the pulse price."""
    pulses_per_minute = -(-60 // org.pulse_sec)
    return pulses_per_minute * pulse_price_paise(org.rate_paise, org.pulse_sec)


async def open_wallet(session: AsyncSession, org_id: str, *, now: datetime) -> Wallet:
    wallet = Wallet(org_id=org_id, balance=0, reserved=0, updated_at=now)
    session.add(wallet)
    await session.flush()
    return wallet


async def get_wallet(session: AsyncSession, org_id: str) -> Wallet:
    return (await session.execute(scoped(Wallet, org_id))).scalar_one()


async def _append(
    session: AsyncSession,
    *,
    org_id: str,
    kind: str,
    amount: int,
    balance_after: int,
    now: datetime,
    reference: str | None = None,
    call_sid: str | None = None,
    invoice_id: str | None = None,
) -> LedgerEntry:
    entry = LedgerEntry(
        org_id=org_id,
        kind=kind,
        amount=amount,
        balance_after=balance_after,
        reference=reference,
        call_sid=call_sid,
        invoice_id=invoice_id,
        created_at=now,
    )
    session.add(entry)
    await session.flush()
    return entry


async def credit(
    session: AsyncSession,
    org_id: str,
    amount: int,
    *,
    kind: str,
    now: datetime,
    reference: str | None = None,
    invoice_id: str | None = None,
) -> LedgerEntry:
    """Add ``amount`` paise (> 0) to the balance."""
    if amount <= 0:
        raise ValueError("a credit must be positive")
    balance = (
        await session.execute(
            update(Wallet)
            .where(owned_by(Wallet, org_id))
            .values(balance=Wallet.balance + amount, updated_at=now)
            .returning(Wallet.balance)
        )
    ).scalar_one()
    return await _append(
        session,
        org_id=org_id,
        kind=kind,
        amount=amount,
        balance_after=balance,
        now=now,
        reference=reference,
        invoice_id=invoice_id,
    )


async def debit(
    session: AsyncSession,
    org_id: str,
    amount: int,
    *,
    kind: str,
    now: datetime,
    reference: str | None = None,
    call_sid: str | None = None,
) -> LedgerEntry | None:
    """Take ``amount`` paise from the available balance; None when it does not cover it."""
    if amount <= 0:
        raise ValueError("a debit must be positive")
    balance = (
        await session.execute(
            update(Wallet)
            .where(owned_by(Wallet, org_id), Wallet.balance - Wallet.reserved >= amount)
            .values(balance=Wallet.balance - amount, updated_at=now)
            .returning(Wallet.balance)
        )
    ).scalar_one_or_none()
    if balance is None:
        return None
    return await _append(
        session,
        org_id=org_id,
        kind=kind,
        amount=-amount,
        balance_after=balance,
        now=now,
        reference=reference,
        call_sid=call_sid,
    )


async def hold(session: AsyncSession, org_id: str, amount: int, *, now: datetime) -> bool:
    """Reserve ``amount`` paise of the available balance; False when it is not there."""
    if amount <= 0:
        raise ValueError("a hold must be positive")
    held = (
        await session.execute(
            update(Wallet)
            .where(owned_by(Wallet, org_id), Wallet.balance - Wallet.reserved >= amount)
            .values(reserved=Wallet.reserved + amount, updated_at=now)
            .returning(Wallet.reserved)
        )
    ).scalar_one_or_none()
    return held is not None


class CallHold(Enum):
    """The outcome of holding a new call's first minute (SPEC §1's order: money first)."""

    HELD = "held"
    NO_BALANCE = "no_balance"
    TOO_MANY_LIVE = "too_many_live"


@functools.cache
def _hold_calls_statement() -> Any:
    # The table, not the mapped class: an ORM update would read its parameters as rows.
    wallets = Wallet.metadata.tables[Wallet.__tablename__]
    amount = bindparam("hold_amount", type_=BigInteger())
    count = bindparam("hold_calls", type_=Integer())
    return (
        update(wallets)
        .where(
            owned_by(Wallet, bindparam("hold_org_id", type_=String())),
            wallets.c.balance - wallets.c.reserved >= amount,
            wallets.c.live_calls + count <= bindparam("hold_max_live_calls", type_=Integer()),
        )
        .values(
            reserved=wallets.c.reserved + amount,
            live_calls=wallets.c.live_calls + count,
            updated_at=bindparam("hold_now", type_=wallets.c.updated_at.type),
        )
        .returning(wallets.c.reserved)
    )


def _hold_params(
    org_id: str, amount: int, calls: int, max_live_calls: int, now: datetime
) -> dict[str, Any]:
    return {
        "hold_org_id": org_id,
        "hold_amount": amount,
        "hold_calls": calls,
        "hold_max_live_calls": max_live_calls,
        "hold_now": now,
    }


def by_organisation(org_ids: Sequence[str]) -> list[tuple[str, list[int]]]:
    """The indexes of a batch's asks by organisation, organisations in sorted order: the
    one order in which every batch's steps lock wallet rows (no deadlock among them)."""
    groups: dict[str, list[int]] = {}
    for index, org_id in enumerate(org_ids):
        groups.setdefault(org_id, []).append(index)
    return sorted(groups.items())


@dataclass(frozen=True, slots=True)
class CallHoldAsk:
    """One new call's hold, left to its batch (``hold_calls``); ``refusal`` is the error
    its caller gets when it cannot be held."""

    org_id: str
    amount: int
    max_live_calls: int
    now: datetime
    refusal: Callable[[CallHold], BaseException]


async def hold_calls(
    conn: AsyncConnection, asks: Sequence[CallHoldAsk]
) -> list[BaseException | None]:
    """The new calls of a batch held at once, as ``hold_call`` holds one: one conditional
    UPDATE per organisation, run just before the batch commits, so its wallet row is
    locked for the commit alone.

    When an organisation's calls do not all fit, its wallet row is read under lock and
    the calls are taken in order while the balance and the live-call cap allow; each of
    the others gets its refusal (the batch then runs again without them).
    """
    refusals: list[BaseException | None] = [None] * len(asks)
    if any(ask.amount <= 0 for ask in asks):
        raise ValueError("a hold must be positive")
    for org_id, indexes in by_organisation([ask.org_id for ask in asks]):
        mine = [asks[index] for index in indexes]
        params = _hold_params(
            org_id,
            sum(ask.amount for ask in mine),
            len(mine),
            min(ask.max_live_calls for ask in mine),
            max(ask.now for ask in mine),
        )
        if (await conn.execute(_hold_calls_statement(), params)).first() is not None:
            continue
        row = (
            await conn.execute(
                select(Wallet.balance - Wallet.reserved, Wallet.live_calls)
                .where(owned_by(Wallet, org_id))
                .with_for_update()
            )
        ).one()
        available, live = int(row[0]), int(row[1])
        for index, ask in zip(indexes, mine, strict=True):
            if available < ask.amount:
                refusals[index] = ask.refusal(CallHold.NO_BALANCE)
            elif live >= ask.max_live_calls:
                refusals[index] = ask.refusal(CallHold.TOO_MANY_LIVE)
            else:
                available, live = available - ask.amount, live + 1
        if all(refusals[index] is None for index in indexes):
            # The row changed between the two statements: under its lock now, all fit.
            held = await conn.execute(_hold_calls_statement(), params)
            if held.first() is None:
                raise RuntimeError(f"wallet of {org_id} refused a hold its locked row allows")
    return refusals


async def could_hold_call(
    session: AsyncSession, org_id: str, amount: int, *, max_live_calls: int
) -> CallHold:
    """What ``hold_call`` would answer now (a read: nothing is reserved)."""
    wallet = await get_wallet(session, org_id)
    if wallet.balance - wallet.reserved < amount:
        return CallHold.NO_BALANCE
    if wallet.live_calls >= max_live_calls:
        return CallHold.TOO_MANY_LIVE
    return CallHold.HELD


@dataclass(frozen=True, slots=True)
class Settlement:
    """One ended call's settlement, left to its batch (``settle_calls``)."""

    org_id: str
    held: int
    charge: int
    now: datetime
    call_sid: str
    reference: str | None = None


@functools.cache
def _settle_calls_statement() -> Any:
    wallets = Wallet.metadata.tables[Wallet.__tablename__]
    held = bindparam("settle_held", type_=BigInteger())
    calls = bindparam("settle_calls", type_=Integer())
    return (
        update(wallets)
        .where(
            owned_by(Wallet, bindparam("settle_org_id", type_=String())),
            wallets.c.reserved >= held,
        )
        .values(
            balance=wallets.c.balance - bindparam("settle_charge", type_=BigInteger()),
            reserved=wallets.c.reserved - held,
            live_calls=case((wallets.c.live_calls >= calls, wallets.c.live_calls - calls), else_=0),
            updated_at=bindparam("settle_now", type_=wallets.c.updated_at.type),
        )
        .returning(wallets.c.balance)
    )


async def settle_calls(
    conn: AsyncConnection, settlements: Sequence[Settlement]
) -> list[BaseException | None]:
    """The ended calls of a batch settled at once, as ``settle_hold`` settles one: one
    ``UPDATE`` per organisation just before the batch commits (so its wallet row is
    locked for the commit alone), then the charges' ledger entries, each with the
    balance after it in the order of the asks."""
    outcomes: list[BaseException | None] = [None] * len(settlements)
    entries: list[dict[str, Any]] = []
    for org_id, indexes in by_organisation([s.org_id for s in settlements]):
        mine = [settlements[index] for index in indexes]
        params = {
            "settle_org_id": org_id,
            "settle_held": sum(s.held for s in mine),
            "settle_charge": sum(s.charge for s in mine),
            "settle_calls": len(mine),
            "settle_now": max(s.now for s in mine),
        }
        balance = (await conn.execute(_settle_calls_statement(), params)).scalar_one_or_none()
        if balance is None:
            for index in indexes:
                outcomes[index] = RuntimeError(f"wallet of {org_id} holds less than its calls")
            continue
        # The balance after each charge: the last one leaves the row's balance.
        after = balance + sum(s.charge for s in mine)
        for settlement in mine:
            after -= settlement.charge
            if settlement.charge:
                entries.append(
                    {
                        "org_id": org_id,
                        "kind": "call_charge",
                        "amount": -settlement.charge,
                        "balance_after": after,
                        "reference": settlement.reference,
                        "call_sid": settlement.call_sid,
                        "invoice_id": None,
                        "created_at": settlement.now,
                    }
                )
    if entries:
        await conn.execute(LedgerEntry.metadata.tables[LedgerEntry.__tablename__].insert(), entries)
    return outcomes


async def settle_hold(
    session: AsyncSession,
    org_id: str,
    *,
    held: int,
    charge: int,
    now: datetime,
    call_sid: str,
    reference: str | None = None,
) -> None:
    """At a call's end: release its hold of ``held`` paise, charge ``charge`` (≤ held)
    and count it no longer live (``settle_calls``). In a batch, the batch does it for
    all its ended calls at once, just before its commit; otherwise here and now."""
    if not 0 <= charge <= held:
        raise ValueError("a settled charge must be within its hold")
    settlement = Settlement(org_id, held, charge, now, call_sid, reference)
    if not defer_to_batch(session, settle_calls, settlement, stage=WALLET_STAGE):
        (refusal,) = await settle_calls(await session.connection(), [settlement])
        if refusal is not None:
            raise refusal


async def ledger_sum(session: AsyncSession, org_id: str) -> int:
    total = (
        await session.execute(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                owned_by(LedgerEntry, org_id)
            )
        )
    ).scalar_one()
    return int(total)
