"""Money for a live call (SPEC §4): the hold at acceptance, credit in chunks, one charge.

The call's row keeps ``hold_paise`` (what the wallet reserves for it) and
``granted_pulses`` (the talk time it may use). Every change is a conditional
statement on the wallet row, in the same transaction as the call row's change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

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


async def _release(session: AsyncSession, org_id: str, amount: int, *, now: datetime) -> None:
    await session.execute(
        update(Wallet)
        .where(owned_by(Wallet, org_id), Wallet.reserved >= amount)
        .values(reserved=Wallet.reserved - amount, updated_at=now)
    )


async def grant_pulses(
    session: AsyncSession,
    call: HeldCall,
    pricing: Pricing,
    *,
    now: datetime,
) -> int:
    """Grant the call up to one more chunk of pulses; returns how many were granted.

    The first grant (at bridge) converts the acceptance hold; later ones hold
    more. Never past ``max_duration_sec``; fewer when the wallet has less.
    """
    want = CHUNK_PULSES
    if pricing.max_pulses is not None:
        want = min(want, pricing.max_pulses - call.granted_pulses)
    price = pricing.pulse_price
    first = call.granted_pulses == 0
    for pulses in range(want, 0, -1):
        target_hold = (call.granted_pulses + pulses) * price
        extra = target_hold - call.hold_paise if first else pulses * price
        if extra < 0:
            await _release(session, call.org_id, -extra, now=now)
        elif extra > 0 and not await wallet.hold(session, call.org_id, extra, now=now):
            continue
        call.hold_paise += extra
        call.granted_pulses += pulses
        return pulses  # the call's row is written with the rest of its change
    return 0


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
