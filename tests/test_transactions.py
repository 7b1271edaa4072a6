"""ARCHITECTURE §3: a write unit of work that PostgreSQL aborts for a deadlock (or a
serialization failure) runs again, and its effects happen once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from maskline.errors import InsufficientBalance
from maskline.kit.db import Database
from maskline.kit.writer import NUMBER_STAGE, TRANSACTION_RUNS, WALLET_STAGE, defer_to_batch
from tests.calls.conftest import call_settings
from tests.conftest import TEST_SECRET_KEY, Cli
from tests.support.api import running_api
from tests.support.calls import billing
from tests.support.databases import AbortedOnce


@pytest.mark.postgres_only  # SQLite's single writer cannot deadlock
class TestDeadlockRetry:
    async def test_both_sides_of_a_deadlock_commit_once(self, own_database: str) -> None:
        # Two processes' writers (a process's own units share one transaction in turn).
        first, second = Database(own_database, pool_size=2), Database(own_database, pool_size=2)
        try:
            async with first.write() as session:
                await session.execute(text("CREATE TABLE probe (id int PRIMARY KEY, n int)"))
                await session.execute(text("INSERT INTO probe VALUES (1, 0), (2, 0)"))
            both_hold_one = asyncio.Barrier(2)
            runs: Counter[str] = Counter()

            def crossing(db: Database, name: str, first: int, second: int) -> Awaitable[None]:
                async def unit(session: AsyncSession) -> None:
                    runs[name] += 1
                    bump = text("UPDATE probe SET n = n + 1 WHERE id = :id")
                    await session.execute(bump, {"id": first})
                    if runs[name] == 1:
                        # Each holds one row and then wants the other's: a deadlock.
                        await both_hold_one.wait()
                    await session.execute(bump, {"id": second})

                return db.transaction(unit)

            await asyncio.gather(crossing(first, "a", 1, 2), crossing(second, "b", 2, 1))
            async with first.read() as session:
                found = await session.execute(text("SELECT id, n FROM probe"))
                rows = {row_id: n for row_id, n in found}
            assert rows == {1: 2, 2: 2}
            # PostgreSQL aborted one of them, which then ran again. On a loaded machine the
            # one run again can take the row the other was woken for before that one has
            # it, and the two deadlock once more: each unit's effects still happen once.
            assert max(runs.values()) >= 2
            assert sum(runs.values()) <= 2 * TRANSACTION_RUNS
        finally:
            await first.dispose()
            await second.dispose()


ROWS_OF_ORG = {
    "calls": "SELECT count(*) FROM calls WHERE org_id = $1",
    "invoices": "SELECT count(*) FROM invoices WHERE org_id = $1",
    "ledger_entries": "SELECT count(*) FROM ledger_entries WHERE org_id = $1",
}


async def _count(database_url: str, table: str, org_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        found: int = await conn.fetchval(ROWS_OF_ORG[table], org_id)
        return found
    finally:
        await conn.close()


@pytest.mark.postgres_only  # SQLite's single writer cannot deadlock
class TestAbortedUnitsRunAgain:
    async def test_a_topup_aborted_once_credits_and_invoices_once(
        self, own_database: str, tmp_path: Path
    ) -> None:
        env = {
            "MASKLINE_DATABASE_URL": own_database,
            "MASKLINE_SECRET_KEY": TEST_SECRET_KEY,
            "MASKLINE_DATA_DIR": str(tmp_path / "data"),
        }
        cli = Cli(env, tmp_path)
        org = await asyncio.to_thread(cli.ok, "org", "create", "retry-topup")
        # The top-up's last insert (its ledger entry) is aborted the first time.
        aborted = await AbortedOnce(own_database, "ledger_entries").install()
        invoice = await asyncio.to_thread(cli.ok, "wallet", "topup", "--org", "retry-topup", "100")
        assert await aborted.inserts() == 2
        # The aborted run's invoice number was rolled back with it: no gap.
        assert str(invoice["invoice_number"]).endswith("/000001")
        assert (invoice["amount"], invoice["org_id"]) == (100, org["id"])
        shown = await asyncio.to_thread(cli.ok, "wallet", "show", "--org", "retry-topup")
        assert (shown["balance"], shown["reserved"]) == (100, 0)
        assert await _count(own_database, "ledger_entries", str(org["id"])) == 1
        assert await _count(own_database, "invoices", str(org["id"])) == 1

    async def test_a_call_aborted_once_is_placed_once_with_one_hold(
        self, own_database: str, tmp_path: Path
    ) -> None:
        # Party A rings for ten minutes: the hold is still the call's first one when read.
        settings = call_settings(own_database, tmp_path / "data", sim_ring_sec=600)
        async with running_api(settings) as api:
            org = await api.make_org("retry-call", balance="100", numbers=1)
            aborted = await AbortedOnce(own_database, "calls").install()
            response = await api.client.post(
                "/v1/masking/calls",
                headers=org.auth,
                json={"party_a": "9876543210", "party_b": "9123456789"},
            )
            assert response.status_code == 201, response.text
            assert await aborted.inserts() == 2
            call_sid = response.json()["data"]["call_sid"]
            logs = await api.client.get("/v1/masking/call-logs", headers=org.auth)
            assert [c["call_sid"] for c in logs.json()["data"]] == [call_sid]
            assert await _count(own_database, "calls", org.id) == 1
            wallet = await billing(api, org)
            assert (wallet["balance"], wallet["reserved"]) == (100, wallet["minimum_balance"])


class TestGroupCommit:
    """ARCHITECTURE §3: units of work queued together share one transaction, each in a
    savepoint: one that fails answers its own caller, the rest commit."""

    async def test_a_unit_failing_inside_a_batch_fails_alone(self, own_database: str) -> None:
        db = Database(own_database, pool_size=2)
        try:
            async with db.write() as session:
                await session.execute(text("CREATE TABLE probe (id int PRIMARY KEY, note text)"))
            holding = asyncio.Event()
            release = asyncio.Event()

            async def first(session: AsyncSession) -> str:
                await session.execute(text("INSERT INTO probe VALUES (1, 'first')"))
                # The writer is busy with this batch: the units below queue for the next.
                holding.set()
                await release.wait()
                return "first"

            def insert(row_id: int, note: str) -> Callable[[AsyncSession], Awaitable[str]]:
                async def unit(session: AsyncSession) -> str:
                    await session.execute(
                        text("INSERT INTO probe VALUES (:id, :note)"), {"id": row_id, "note": note}
                    )
                    return note

                return unit

            async def refused(session: AsyncSession) -> str:
                await session.execute(text("INSERT INTO probe VALUES (3, 'written, then refused')"))
                raise InsufficientBalance()

            batches = db.writer.batches
            started = asyncio.create_task(db.transaction(first))
            await holding.wait()
            queued = [
                asyncio.create_task(db.transaction(unit))
                for unit in (
                    insert(2, "second"),
                    refused,
                    insert(2, "a duplicate of the second"),
                    insert(4, "fourth"),
                )
            ]
            await asyncio.sleep(0)  # every unit is queued before the writer is free
            release.set()
            outcomes = await asyncio.gather(started, *queued, return_exceptions=True)
            async with db.read() as session:
                rows = dict((await session.execute(text("SELECT id, note FROM probe"))).all())
        finally:
            await db.dispose()
        assert outcomes[:2] == ["first", "second"]
        assert isinstance(outcomes[2], InsufficientBalance)
        assert isinstance(outcomes[3], IntegrityError)
        assert outcomes[4] == "fourth"
        # The four queued units were one batch: one commit after the first's. It ran once
        # without savepoints, and again with one per unit when a unit failed.
        assert db.writer.batches == batches + 2
        assert db.writer.reruns == 1
        assert rows == {1: "first", 2: "second", 4: "fourth"}

    async def test_a_step_refusing_a_units_ask_answers_it_and_commits_the_others(
        self, own_database: str
    ) -> None:
        db = Database(own_database, pool_size=2)
        try:
            async with db.write() as session:
                await session.execute(text("CREATE TABLE probe (id int PRIMARY KEY, note text)"))
                await session.execute(text("CREATE TABLE tally (n int)"))
                await session.execute(text("INSERT INTO tally VALUES (0)"))
            holding, release = asyncio.Event(), asyncio.Event()
            seen: list[list[int]] = []

            async def first(session: AsyncSession) -> str:
                holding.set()
                await release.wait()
                return "first"

            async def add_up(
                conn: AsyncConnection, asks: Sequence[Any]
            ) -> list[BaseException | None]:
                # Refuses odd asks; writes the sum of the rest once for the whole batch.
                seen.append(list(asks))
                granted = [ask for ask in asks if ask % 2 == 0]
                await conn.execute(text("UPDATE tally SET n = n + :n"), {"n": sum(granted)})
                return [None if ask % 2 == 0 else InsufficientBalance() for ask in asks]

            def asking(row_id: int) -> Callable[[AsyncSession], Awaitable[int]]:
                async def unit(session: AsyncSession) -> int:
                    await session.execute(
                        text("INSERT INTO probe VALUES (:id, 'asked')"), {"id": row_id}
                    )
                    assert defer_to_batch(session, add_up, row_id)
                    return row_id

                return unit

            started = asyncio.create_task(db.transaction(first))
            await holding.wait()
            queued = [asyncio.create_task(db.transaction(asking(n))) for n in (2, 3, 4, 5)]
            await asyncio.sleep(0)  # every unit is queued before the writer is free
            release.set()
            outcomes = await asyncio.gather(started, *queued, return_exceptions=True)
            async with db.read() as session:
                rows = (await session.execute(text("SELECT id FROM probe ORDER BY id"))).all()
                tally = (await session.execute(text("SELECT n FROM tally"))).scalar_one()
            async with db.write() as session:
                # Outside a batch there is none to leave the ask to.
                assert not defer_to_batch(session, add_up, 6)
        finally:
            await db.dispose()
        assert outcomes[0] == "first"
        assert (outcomes[1], outcomes[3]) == (2, 4)
        assert isinstance(outcomes[2], InsufficientBalance)
        assert isinstance(outcomes[4], InsufficientBalance)
        # The step ran once with every ask; then, without the refused units, once more.
        assert seen == [[2, 3, 4, 5], [2, 4]]
        assert ([row.id for row in rows], tally) == ([2, 4], 6)

    async def test_steps_run_stage_by_stage_each_stage_in_the_order_asked(
        self, own_database: str
    ) -> None:
        db = Database(own_database, pool_size=2)
        ran: list[tuple[str, list[int]]] = []
        holding, release = asyncio.Event(), asyncio.Event()

        def step(name: str) -> Any:
            async def run(conn: AsyncConnection, asks: Sequence[Any]) -> list[None]:
                ran.append((name, list(asks)))
                return [None] * len(asks)

            return run

        wallet, number, events, tallies = (
            step("wallet"),
            step("number"),
            step("events"),
            step("tallies"),
        )
        grant = step("grant")

        async def first(session: AsyncSession) -> str:
            holding.set()
            await release.wait()
            return "first"

        def asking(n: int) -> Callable[[AsyncSession], Awaitable[int]]:
            async def unit(session: AsyncSession) -> int:
                if n == 1:
                    # As a bridged call asks: its grant, in the wallets' stage.
                    assert defer_to_batch(session, grant, n, stage=WALLET_STAGE)
                # As a call's end asks: its number freed, then its wallet settled, then
                # its events.
                assert defer_to_batch(session, number, n, stage=NUMBER_STAGE)
                assert defer_to_batch(session, wallet, n, stage=WALLET_STAGE)
                assert defer_to_batch(session, events, n)
                if n == 2:
                    assert defer_to_batch(session, tallies, n)
                return n

            return unit

        try:
            started = asyncio.create_task(db.transaction(first))
            await holding.wait()
            queued = [asyncio.create_task(db.transaction(asking(n))) for n in (1, 2, 3)]
            await asyncio.sleep(0)  # every unit is queued before the writer is free
            release.set()
            outcomes = await asyncio.gather(started, *queued)
        finally:
            await db.dispose()
        assert outcomes == ["first", 1, 2, 3]
        # One batch of the three: each step once with every ask; the first stage's steps,
        # then the wallets' (in the order first asked), then the numbers'.
        assert ran == [
            ("events", [1, 2, 3]),
            ("tallies", [2]),
            ("grant", [1]),
            ("wallet", [1, 2, 3]),
            ("number", [1, 2, 3]),
        ]


class _Base(DeclarativeBase):
    pass


class _Probe(_Base):
    __tablename__ = "probe"
    id: Mapped[int] = mapped_column(primary_key=True)
    note: Mapped[str]


class TestUnitsOfOneBatch:
    """ARCHITECTURE §3: the units of a batch share its transaction and nothing else: what
    one unit loaded or changed through the ORM is the database's, never a copy another
    unit is handed."""

    async def test_each_unit_reads_the_row_as_the_units_before_it_left_it(
        self, own_database: str
    ) -> None:
        db = Database(own_database, pool_size=2)
        holding, release = asyncio.Event(), asyncio.Event()

        async def first(session: AsyncSession) -> str:
            holding.set()
            await release.wait()
            return "first"

        async def change_through_the_orm(session: AsyncSession) -> _Probe:
            probe = await session.get(_Probe, 1)
            assert probe is not None
            probe.note = "changed by the second"  # flushed when the unit ends
            return probe  # its caller holds it: a session would have it still

        async def change_behind_the_orm(session: AsyncSession) -> str:
            await session.execute(text("UPDATE probe SET note = note || ', then the third'"))
            return "third"

        async def read(session: AsyncSession) -> str:
            probe = await session.get(_Probe, 1)
            assert probe is not None
            return probe.note

        try:
            async with db.write() as session:
                await session.execute(text("CREATE TABLE probe (id int PRIMARY KEY, note text)"))
                await session.execute(text("INSERT INTO probe VALUES (1, 'as stored')"))
            started = asyncio.create_task(db.transaction(first))
            await holding.wait()
            batches = db.writer.batches
            queued = [
                asyncio.create_task(db.transaction(unit))
                for unit in (change_through_the_orm, change_behind_the_orm, read)
            ]
            await asyncio.sleep(0)  # every unit is queued before the writer is free
            release.set()
            outcomes = await asyncio.gather(started, *queued)
        finally:
            await db.dispose()
        assert outcomes[0] == "first"
        assert outcomes[1].note == "changed by the second"
        assert outcomes[2:] == ["third", "changed by the second, then the third"]
        # The first's batch, then one of the three.
        assert db.writer.batches == batches + 2
