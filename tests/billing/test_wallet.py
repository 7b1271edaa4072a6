"""SPEC §4: the wallet never goes below zero, even under concurrent debits and holds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from maskline.billing import talktime, wallet
from maskline.billing.models import LedgerEntry, Wallet
from maskline.kit.writer import defer_to_batch
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

    async def test_grants_in_one_batch_take_the_balance_in_order(self, api: Api) -> None:
        org = await api.make_org("wallet-grant-batch", balance="10")
        db, now = api.runtime.db, api.runtime.clock.now()
        holding, release = asyncio.Event(), asyncio.Event()
        stored: list[list[tuple[str, int, int]]] = []

        async def store(_conn: AsyncConnection, grants: Sequence[talktime.Grant]) -> None:
            stored.append([(g.call_sid, g.total, g.held + g.extra) for g in grants])

        async def first(session: AsyncSession) -> None:
            holding.set()  # the writer is busy: the grants below queue as one batch
            await release.wait()

        def granting(sid: str) -> Callable[[AsyncSession], Awaitable[talktime.Grant]]:
            async def unit(session: AsyncSession) -> talktime.Grant:
                # A later chunk: 5 pulses granted and held already, 5 more wanted.
                grant = talktime.Grant(org.id, sid, 5, 750, 5, MINUTE, now, store)
                assert defer_to_batch(session, talktime.grant_calls, grant)
                return grant

            return unit

        started = asyncio.create_task(db.transaction(first))
        await holding.wait()
        asked = [
            asyncio.create_task(db.transaction(granting(sid))) for sid in ("c-1", "c-2", "c-3")
        ]
        await asyncio.sleep(0)
        release.set()
        _, *grants = await asyncio.gather(started, *asked)
        row, ledger = await _state(api, org.id)
        # Rs 10 covers 6 more pulses: all 5 of the first call's chunk, 1 of the second's.
        assert [(g.pulses, g.total) for g in grants] == [(5, 10), (1, 6), (0, 5)]
        assert stored == [[("c-1", 10, 1500), ("c-2", 6, 900)]]
        assert (row.balance, row.reserved, ledger) == (1000, 900, 1000)


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
