"""The job runner (ARCHITECTURE §3): rows claimed by lease, in batches, on both databases.

The runner is driven here over a table of the test's own, in a database of its own,
through its public classes: ``JobRunner`` with a ``Queue`` that claims with
``lease_rows``, as the engine and the workers do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from maskline.kit.clock import Clock, ScaledClock
from maskline.kit.db import Database, UTCDateTime
from maskline.worker.lease import Lease, lease_rows, unleased
from maskline.worker.runner import JobRunner
from tests.support.api import ShiftedClock
from tests.support.databases import fresh_database
from tests.support.waits import eventually, eventually_value

pytestmark = pytest.mark.database

LONG_LEASE = timedelta(hours=1)
# Longer than any test: a round that follows another without a wake-up did not wait.
NEVER_SEC = 3600.0


class _Tables(DeclarativeBase):
    pass


class Chore(_Tables):
    """A leased row like a delivery or a recording: due, held until its lease lapses."""

    __tablename__ = "chores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claims: Mapped[int] = mapped_column(Integer, default=0)


class Chores:
    """The queue of ``chores``: the rows due and not held, in id order. It notes what it
    was handed and how many rounds have tended it; ``gate``, once cleared, holds
    ``take`` until it is set again."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.leases: list[Lease] = []
        self.renewals: list[Lease] = []
        self.tended = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.taken = asyncio.Event()

    @property
    def claimed(self) -> list[int]:
        return [chore for batch in self.batches for chore in batch]

    async def tend(self) -> None:
        self.tended += 1

    async def claim(self, session: AsyncSession, lease: Lease) -> Sequence[int]:
        rows = await lease_rows(
            session,
            Chore.id,
            where=[
                Chore.due_at <= lease.now,
                unleased(Chore.lease_expires_at, lease.now),
            ],
            order_by=[Chore.id],
            limit=lease.limit,
            stamp={
                Chore.lease_owner: lease.owner,
                Chore.lease_expires_at: lease.until,
                Chore.claims: Chore.claims + 1,
            },
            returning=[Chore.id],
        )
        return list(rows.scalars())

    async def take(self, jobs: Sequence[int], lease: Lease) -> None:
        self.taken.set()
        await self.gate.wait()
        # RETURNING gives no order: the batch is noted as a set, sorted.
        self.batches.append(sorted(jobs))
        self.leases.append(lease)


@pytest.fixture
def chores_url(tmp_path: Path) -> Iterator[str]:
    """A database of the kind under test holding only the ``chores`` table."""
    with fresh_database(tmp_path, migrate=False) as url:

        async def create() -> None:
            db = Database(url, pool_size=1)
            try:
                async with db.engine.begin() as conn:
                    await conn.run_sync(_Tables.metadata.create_all)
            finally:
                await db.dispose()

        asyncio.run(create())
        yield url


@pytest.fixture
async def db(chores_url: str) -> AsyncIterator[Database]:
    database = Database(chores_url)
    yield database
    await database.dispose()


async def add_chores(db: Database, ids: range, *, due_at: datetime, **lease: object) -> None:
    async with db.write() as session:
        session.add_all(Chore(id=i, due_at=due_at, claims=0, **lease) for i in ids)


async def chores(db: Database) -> dict[int, tuple[str | None, datetime | None, int]]:
    """Each row's owner, lease end and number of claims."""
    async with db.read() as session:
        rows = await session.execute(
            select(Chore.id, Chore.lease_owner, Chore.lease_expires_at, Chore.claims)
        )
        return {i: (owner, until, claims) for i, owner, until, claims in rows}


@asynccontextmanager
async def running(
    queue: Chores,
    db: Database,
    *,
    owner: str,
    batch: int = 10,
    lease: timedelta = LONG_LEASE,
    clock: Clock | None = None,
    renew: bool = False,
) -> AsyncIterator[JobRunner[int]]:
    """A started runner over ``queue``, stopped on the way out; with ``renew``, its
    heartbeat renews the leases of every row it holds."""

    async def renew_held() -> None:
        async def stamp(session: AsyncSession, terms: Lease) -> Lease:
            await lease_rows(
                session,
                Chore.id,
                where=[Chore.lease_owner == terms.owner],
                stamp={Chore.lease_expires_at: terms.until},
                returning=[Chore.id],
            )
            return terms

        queue.renewals.append(await runner.leased(stamp))

    runner = JobRunner(
        queue,
        name=f"chores {owner}",
        db=db,
        clock=clock or ScaledClock(1),
        log=logging.getLogger("tests.worker"),
        owner=owner,
        lease=lease,
        batch=batch,
        poll_sec=NEVER_SEC,
        renew=renew_held if renew else None,
    )
    await runner.start()
    try:
        yield runner
    finally:
        queue.gate.set()
        await runner.stop()


async def a_whole_round(runner: JobRunner[int], queue: Chores) -> None:
    """Return once a round that began after this call has ended (its claim included)."""
    before = queue.tended
    runner.wake()
    await eventually(lambda: queue.tended > before, what="a round to begin")
    runner.wake()  # after that round's start: the next one begins once it has ended
    await eventually(lambda: queue.tended > before + 1, what="the round to end")


class TestClaiming:
    async def test_a_full_batch_makes_the_runner_go_again_at_once(self, db: Database) -> None:
        clock = ScaledClock(1)
        await add_chores(db, range(1, 13), due_at=clock.now())
        queue = Chores()
        async with running(queue, db, owner="wrk_a", batch=5, clock=clock):
            # No wake-up and an hour's poll: only a full batch makes another round.
            await eventually(lambda: len(queue.claimed) == 12, what="every chore claimed")
            assert queue.batches == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12]]

    async def test_a_wake_up_claims_what_became_due_without_waiting_for_the_poll(
        self, db: Database
    ) -> None:
        clock = ScaledClock(1)
        queue = Chores()
        async with running(queue, db, owner="wrk_a", clock=clock) as runner:
            await a_whole_round(runner, queue)
            assert queue.batches == []
            await add_chores(db, range(1, 3), due_at=clock.now())
            runner.wake()
            await eventually(lambda: queue.batches == [[1, 2]], what="the new chores claimed")

    async def test_a_claim_stamps_owner_and_lease_from_the_moment_it_was_made(
        self, db: Database
    ) -> None:
        clock = ScaledClock(1)
        await add_chores(db, range(1, 4), due_at=clock.now())
        await add_chores(db, range(4, 5), due_at=clock.now() + timedelta(hours=1))
        queue = Chores()
        async with running(queue, db, owner="wrk_a", clock=clock) as runner:
            await eventually(lambda: queue.batches != [], what="a batch")
            await a_whole_round(runner, queue)
        [lease] = queue.leases
        assert lease.owner == "wrk_a"
        assert lease.until == lease.now + LONG_LEASE
        assert lease.limit == 10
        assert queue.batches == [[1, 2, 3]]
        assert await chores(db) == {
            1: ("wrk_a", lease.until, 1),
            2: ("wrk_a", lease.until, 1),
            3: ("wrk_a", lease.until, 1),
            4: (None, None, 0),  # not due yet
        }

    async def test_two_runners_on_one_database_never_claim_the_same_row(
        self, chores_url: str, db: Database
    ) -> None:
        clock = ScaledClock(1)
        await add_chores(db, range(1, 301), due_at=clock.now())
        # Two processes: each its own engine and pool (on SQLite, its own write turn).
        other_db = Database(chores_url)
        first, second = Chores(), Chores()
        # Each holds its first batch until the other has claimed one: both hold rows at once.
        first.gate.clear()
        second.gate.clear()
        try:
            async with (
                running(first, db, owner="wrk_a", batch=7),
                running(second, other_db, owner="wrk_b", batch=7),
            ):
                await eventually(lambda: first.taken.is_set() and second.taken.is_set())
                first.gate.set()
                second.gate.set()
                await eventually(
                    lambda: len(first.claimed) + len(second.claimed) >= 300,
                    what="every chore claimed",
                )
                rows = await chores(db)
        finally:
            await other_db.dispose()
        assert set(first.claimed).isdisjoint(second.claimed)
        assert sorted(first.claimed + second.claimed) == list(range(1, 301))
        assert {i for i, (owner, _, _) in rows.items() if owner == "wrk_a"} == set(first.claimed)
        assert {i for i, (owner, _, _) in rows.items() if owner == "wrk_b"} == set(second.claimed)
        assert {claims for _, _, claims in rows.values()} == {1}


class TestLeases:
    async def test_a_lapsed_lease_is_claimed_again_and_a_live_one_is_not(
        self, db: Database
    ) -> None:
        now = ScaledClock(1).now()
        await add_chores(db, range(1, 2), due_at=now)
        dead = Chores()
        async with running(dead, db, owner="wrk_dead", lease=timedelta(minutes=1)):
            await eventually(lambda: dead.batches == [[1]], what="the first claim")
        # The first runner is gone without settling its chore. A minute on, its lease has
        # lapsed; half a minute on, it has not.
        early, late = Chores(), Chores()
        half_a_minute = ShiftedClock(ScaledClock(1), timedelta(seconds=30))
        async with running(early, db, owner="wrk_early", clock=half_a_minute) as runner:
            await a_whole_round(runner, early)
        assert early.batches == []
        past_the_lease = ShiftedClock(ScaledClock(1), timedelta(minutes=1, seconds=1))
        async with running(late, db, owner="wrk_late", clock=past_the_lease):
            await eventually(lambda: late.batches == [[1]], what="the chore claimed again")
        [lease] = late.leases
        assert await chores(db) == {1: ("wrk_late", lease.until, 2)}

    async def test_the_heartbeat_renews_what_the_runner_holds(self, db: Database) -> None:
        clock = ScaledClock(1)
        await add_chores(db, range(1, 3), due_at=clock.now())
        queue = Chores()
        # Six heartbeats a lease: one every 0.1 s.
        async with running(queue, db, owner="wrk_a", lease=timedelta(seconds=0.6), renew=True):
            [claim] = await eventually_value(lambda: queue.leases, lambda leases: leases != [])
            await eventually(
                lambda: sum(renewal.now > claim.now for renewal in queue.renewals) >= 2,
                what="two heartbeats after the claim",
            )
        last = queue.renewals[-1]
        assert last.owner == "wrk_a"
        assert last.until == last.now + timedelta(seconds=0.6)
        assert last.until > claim.until
        assert await chores(db) == {1: ("wrk_a", last.until, 1), 2: ("wrk_a", last.until, 1)}


class TestStopping:
    async def test_stop_claiming_waits_for_a_claim_in_flight_then_claims_nothing(
        self, db: Database
    ) -> None:
        clock = ScaledClock(1)
        await add_chores(db, range(1, 3), due_at=clock.now())
        queue = Chores()
        queue.gate.clear()
        async with running(queue, db, owner="wrk_a", clock=clock) as runner:
            await eventually(queue.taken.is_set, what="a claim being handed over")
            stopping = asyncio.create_task(runner.stop_claiming())
            for _ in range(5):
                await asyncio.sleep(0)  # let it run: it must wait for the hand-over
            assert not stopping.done()
            queue.gate.set()
            await stopping
            assert queue.batches == [[1, 2]]
            # The rounds go on (tending) but claim nothing more.
            await add_chores(db, range(3, 4), due_at=clock.now())
            await a_whole_round(runner, queue)
        assert queue.batches == [[1, 2]]
        assert (await chores(db))[3] == (None, None, 0)
