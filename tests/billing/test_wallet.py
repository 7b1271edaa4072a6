"""SPEC §4: the wallet never goes below zero, even under concurrent debits and holds."""

from __future__ import annotations

import asyncio

from maskline.billing import wallet
from maskline.billing.models import Wallet
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
