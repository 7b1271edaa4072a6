"""SPEC §4: the wallet never goes below zero, even under concurrent debits and holds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing import wallet
from maskline.billing.models import LedgerEntry, Wallet
from tests.support.api import Api

MINUTE = 150


async def _concurrently(api: Api, org_id: str, attempts: int, action: str) -> list[bool]:
    db, clock = api.runtime.db, api.runtime.clock
    start = asyncio.Event()

    async def one() -> bool:
        await start.wait()
        async with db.write() as session:
            if action == "debit":
                entry = await wallet.debit(
                    session, org_id, MINUTE, kind="call_charge", now=clock.now()
                )
                return entry is not None
            return await wallet.hold(session, org_id, MINUTE, now=clock.now())

    tasks = [asyncio.create_task(one()) for _ in range(attempts)]
    await asyncio.sleep(0)  # a yield, not a wait: every task reaches start.wait() first
    start.set()
    return await asyncio.gather(*tasks)


async def _state(api: Api, org_id: str) -> tuple[Wallet, int]:
    async with api.runtime.db.read() as session:
        return await wallet.get_wallet(session, org_id), await wallet.ledger_sum(session, org_id)


class TestConcurrentMoney:
    async def test_twenty_debits_on_a_wallet_for_ten_exactly_ten_succeed(self, api: Api) -> None:
        org = await api.make_org("wallet-debits", balance="15")
        results = await _concurrently(api, org.id, 20, "debit")
        assert results.count(True) == 10
        row, ledger = await _state(api, org.id)
        assert (row.balance, row.reserved) == (0, 0)
        assert ledger == 0

    async def test_twenty_holds_on_a_wallet_for_ten_exactly_ten_succeed(self, api: Api) -> None:
        org = await api.make_org("wallet-holds", balance="15")
        results = await _concurrently(api, org.id, 20, "hold")
        assert results.count(True) == 10
        row, ledger = await _state(api, org.id)
        assert (row.balance, row.reserved) == (1500, 1500)
        assert ledger == 1500
        response = await api.client.get("/v1/masking/billing", headers=org.auth)
        assert response.json()["data"] == {
            "balance": 15,
            "currency": "INR",
            "rate_per_minute": 1.5,
            "reserved": 15,
            "available": 0,
            "minimum_balance": 1.5,
            "low_balance": True,
        }

    async def test_settling_a_hold_charges_once_and_releases_the_rest(self, api: Api) -> None:
        org = await api.make_org("wallet-settle", balance="10")
        db, now = api.runtime.db, api.runtime.clock.now()
        async with db.write() as session:
            assert await wallet.hold(session, org.id, 750, now=now)
        async with db.write() as session:
            await wallet.settle_hold(session, org.id, held=750, charge=300, now=now, call_sid="c-1")
        row, ledger = await _state(api, org.id)
        assert (row.balance, row.reserved, ledger) == (700, 0, 700)

    async def test_calls_settled_in_one_batch_each_get_their_ledger_entry(self, api: Api) -> None:
        org = await api.make_org("wallet-settle-batch", balance="30")
        db, now = api.runtime.db, api.runtime.clock.now()
        async with db.write() as session:
            assert await wallet.hold(session, org.id, 2250, now=now)
        holding, release = asyncio.Event(), asyncio.Event()

        async def first(session: AsyncSession) -> None:
            holding.set()  # the writer is busy: the settlements below queue as one batch
            await release.wait()

        def settling(sid: str, charge: int) -> Callable[[AsyncSession], Awaitable[None]]:
            async def unit(session: AsyncSession) -> None:
                await wallet.settle_hold(
                    session, org.id, held=750, charge=charge, now=now, call_sid=sid
                )

            return unit

        started = asyncio.create_task(db.transaction(first))
        await holding.wait()
        settled = [
            asyncio.create_task(db.transaction(settling(sid, charge)))
            for sid, charge in (("c-1", 300), ("c-2", 0), ("c-3", 150))
        ]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(started, *settled)
        async with db.read() as session:
            entries = (
                await session.execute(
                    select(LedgerEntry.call_sid, LedgerEntry.amount, LedgerEntry.balance_after)
                    .where(LedgerEntry.org_id == org.id, LedgerEntry.kind == "call_charge")
                    .order_by(LedgerEntry.id)
                )
            ).all()
        row, ledger = await _state(api, org.id)
        assert (row.balance, row.reserved, ledger) == (2550, 0, 2550)
        # In the order the calls ended, each with the balance it left.
        assert [tuple(entry) for entry in entries] == [("c-1", -300, 2700), ("c-3", -150, 2550)]


class TestBillingObject:
    async def test_billing_is_the_spec_shape_in_rupees(self, api: Api) -> None:
        org = await api.make_org("wallet-shape", balance="98.5")
        response = await api.client.get("/v1/masking/billing", headers=org.auth)
        assert response.status_code == 200
        assert response.json() == {
            "data": {
                "balance": 98.5,
                "currency": "INR",
                "rate_per_minute": 1.5,
                "reserved": 0,
                "available": 98.5,
                "minimum_balance": 1.5,
                "low_balance": False,
            }
        }

    async def test_low_balance_is_below_ten_minutes(self, api: Api) -> None:
        org = await api.make_org("wallet-low", balance="14.99")
        data = (await api.client.get("/v1/masking/billing", headers=org.auth)).json()["data"]
        assert (data["available"], data["low_balance"]) == (14.99, True)
