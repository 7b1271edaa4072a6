"""Money for a live call (SPEC §4): the hold at acceptance, credit in chunks, one charge.

The call's row keeps ``hold_paise`` (what the wallet reserves for it) and
``granted_pulses`` (the talk time it may use). Every change is a conditional
statement on the wallet row, in the same transaction as the call row's change.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.billing import wallet
from maskline.billing.models import Wallet
from maskline.kit.scope import owned_by

CHUNK_PULSES = 5


class HeldCall(Protocol):
    """The money fields of a live call's row, as billing reads and sets them (the calls
    domain's row provides them; billing never imports calls)."""

    call_sid: str
    org_id: str
    hold_paise: int
    granted_pulses: int
    billed_pulses: int
    price_paise: int


@dataclass(frozen=True, slots=True)
class Pricing:
    pulse_sec: int
    pulse_price: int
    max_duration_sec: int | None

    @property
    def max_pulses(self) -> int | None:
        if self.max_duration_sec is None:
            return None
        return math.ceil(self.max_duration_sec / self.pulse_sec)

    def billed_pulses(self, *, talk_sec: int, granted: int) -> int:
        """``ceil(talk / pulse)``, at least 1 for any bridge, never past what was granted."""
        return min(granted, max(1, math.ceil(talk_sec / self.pulse_sec)))


# Stores the new grants of calls in the calls domain's rows (billing never imports calls).
GrantWriter = Callable[[AsyncConnection, Sequence["Grant"]], Awaitable[None]]


@dataclass(eq=False, slots=True)
class Grant:
    """One call's request for its next chunk of credit, and once decided, what it got.

    ``pulses`` (newly granted) and ``extra`` (paise more held; negative when the first
    grant needs less than the acceptance hold) are set by ``grant_calls``;
    ``write_call`` stores the call's new grant in the same transaction.
    """

    org_id: str
    call_sid: str
    granted: int
    held: int
    want: int
    pulse_price: int
    now: datetime
    write_call: GrantWriter
    pulses: int = 0
    extra: int = 0

    @property
    def total(self) -> int:
        """The call's granted pulses once decided."""
        return self.granted + self.pulses

    def cost(self, pulses: int) -> int:
        """What ``pulses`` more hold: the first grant converts the acceptance hold."""
        if self.granted == 0:
            return (self.granted + pulses) * self.pulse_price - self.held
        return pulses * self.pulse_price


def request_grant(
    call: HeldCall, pricing: Pricing, *, now: datetime, write_call: GrantWriter
) -> Grant:
    """The call's request for up to one more chunk of pulses (never past
    ``max_duration_sec``): the first at bridge converts the acceptance hold, later ones
    hold more."""
    want = CHUNK_PULSES
    if pricing.max_pulses is not None:
        want = min(want, pricing.max_pulses - call.granted_pulses)
    return Grant(
        org_id=call.org_id,
        call_sid=call.call_sid,
        granted=call.granted_pulses,
        held=call.hold_paise,
        want=want,
        pulse_price=pricing.pulse_price,
        now=now,
        write_call=write_call,
    )


async def grant_calls(conn: AsyncConnection, grants: Sequence[Grant]) -> list[None]:
    """Decide and hold the grants of a batch: per organisation, its wallet row read under
    lock, each call given the most pulses of its chunk the available balance still
    covers (in the order asked), and one ``UPDATE`` of the row; then the calls' rows.
    Run just before the batch commits, so the wallet row is locked for the commit alone;
    it refuses nothing (a call granted nothing ends when its granted time runs out)."""
    for org_id, indexes in wallet.by_organisation([grant.org_id for grant in grants]):
        mine = [grants[index] for index in indexes]
        available = (
            await conn.execute(
                select(Wallet.balance - Wallet.reserved)
                .where(owned_by(Wallet, org_id))
                .with_for_update()
            )
        ).scalar_one()
        for grant in mine:
            for pulses in range(grant.want, 0, -1):
                extra = grant.cost(pulses)
                if extra <= available:  # a release (the first grant's rest) always fits
                    grant.pulses, grant.extra = pulses, extra
                    available -= extra
                    break
        change = sum(grant.extra for grant in mine)
        if change:
            await conn.execute(
                update(Wallet)
                .where(owned_by(Wallet, org_id))
                .values(reserved=Wallet.reserved + change, updated_at=max(g.now for g in mine))
            )
    decided = [grant for grant in grants if grant.pulses]
    if decided:
        await decided[0].write_call(conn, decided)
    return [None] * len(grants)


async def settle(
    session: AsyncSession,
    call: HeldCall,
    pricing: Pricing,
    *,
    talk_sec: int | None,
    now: datetime,
) -> None:
    """At the end: charge the billed pulses in one ledger entry, release the rest. The
    call's money fields are set first, so its row is written once, with the rest of its
    change."""
    billed = (
        0
        if talk_sec is None
        else pricing.billed_pulses(talk_sec=talk_sec, granted=call.granted_pulses)
    )
    charge = billed * pricing.pulse_price
    held = call.hold_paise
    call.hold_paise = 0
    call.billed_pulses = billed
    call.price_paise = charge
    await wallet.settle_hold(
        session, call.org_id, held=held, charge=charge, now=now, call_sid=call.call_sid
    )
