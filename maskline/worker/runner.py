"""One loop for every leased queue: wait, claim a batch, hand it over, go again.

A round runs the domain's own work of the round (``Queue.tend``), claims up to a
batch of due rows in one write transaction (``Queue.claim``, with ``lease_rows``)
and, once that is committed, hands them to the domain (``Queue.take``). A full
batch means there may be more: the next round starts at once. Otherwise the loop
waits for a wake-up (``wake()``: this process's signal, or another process's
``NOTIFY`` relayed by ``kit.notify``) or the poll interval, which remains the safety
net for a wake-up that was lost or never sent. Wake-ups that come faster than
``settle`` are served by one round (``kit.loops``): a queue woken by every committed
event claims many rows in a round instead of one or two, for a delay of at most
``settle``. Rounds are never cancelled: a
stopping runner finishes the one it is in (``kit.loops``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.clock import Clock
from maskline.kit.db import Database
from maskline.kit.loops import Loops
from maskline.worker.lease import Lease

# How often a runner looks without a wake-up: the safety net for a lost one.
POLL_SEC = 1.0

J = TypeVar("J")
T = TypeVar("T")

Renew = Callable[[], Awaitable[None]]


class Queue(Protocol[J]):
    """A domain's leased rows, as the runner sees them."""

    async def tend(self) -> None:
        """The domain's own work of every round, before the claim (a stopping runner
        that claims nothing still tends)."""

    async def claim(self, session: AsyncSession, lease: Lease) -> Sequence[J]:
        """Claim up to ``lease.limit`` due rows for ``lease.owner`` until
        ``lease.until`` (``lease_rows``); inside the write transaction, so database
        work only, safe to run again."""
        ...

    async def take(self, jobs: Sequence[J], lease: Lease) -> None:
        """Run a claimed batch (never empty), once its claim is committed."""


class JobRunner(Generic[J]):
    """Claims ``queue``'s rows for ``owner`` in batches of ``batch``, each under a
    lease of ``lease``, whenever woken and at least every ``poll_sec`` seconds.

    ``renew``, if given, runs six times a lease (a late heartbeat or two does not lose
    it): the domain renews the leases of what it still holds, with ``leased``.
    """

    def __init__(
        self,
        queue: Queue[J],
        *,
        name: str,
        db: Database,
        clock: Clock,
        log: logging.Logger,
        owner: str,
        lease: timedelta,
        batch: int,
        poll_sec: float = POLL_SEC,
        settle: float = 0.0,
        renew: Renew | None = None,
    ) -> None:
        self.owner = owner
        self.lease = lease
        self.batch = batch
        self._queue = queue
        self._name = name
        self._db = db
        self._clock = clock
        self._poll_sec = poll_sec
        self._settle = settle
        self._renew = renew
        self._loops = Loops(clock, log)
        self._claiming = True
        # Held from a claim to the hand-over of its batch, so that ``stop_claiming`` can
        # wait for one in flight.
        self._claim_turn = asyncio.Lock()

    @property
    def claiming(self) -> bool:
        """Whether rounds still claim (``stop_claiming`` not called)."""
        return self._claiming

    @property
    def stopping(self) -> bool:
        """Whether the runner has been asked to stop (a long batch can give up early)."""
        return self._loops.stopping

    async def start(self) -> None:
        self._loops.start(
            self._name, self._round, self._poll_sec, wakeable=True, settle=self._settle
        )
        if self._renew is not None:
            renew = self._renew

            async def heartbeat() -> bool:
                await renew()
                return False

            every = self.lease.total_seconds() / 6
            self._loops.start(f"{self._name} heartbeat", heartbeat, every)

    def wake(self) -> None:
        """Start a round now (or right after the one in progress)."""
        self._loops.wake()

    async def stop_claiming(self) -> None:
        """Claim nothing more, and return once a claim in flight has been handed over.
        The rounds go on (``tend``, and ``renew``) until ``stop``."""
        self._claiming = False
        async with self._claim_turn:
            pass

    async def stop(self) -> None:
        """Stop after the round in progress (and the heartbeat's), and wait for them."""
        await self._loops.stop()

    async def leased(self, work: Callable[[AsyncSession, Lease], Awaitable[T]]) -> T:
        """Run ``work`` as one write transaction with this runner's lease terms,
        dated once the transaction's write turn is ours."""
        return await self._db.transaction(lambda session: work(session, self._terms()))

    def _terms(self) -> Lease:
        now = self._clock.now()
        return Lease(owner=self.owner, now=now, until=now + self.lease, limit=self.batch)

    async def _round(self) -> bool:
        await self._queue.tend()
        async with self._claim_turn:
            if not self._claiming:
                return False
            lease, jobs = await self.leased(self._claim)
            if jobs:
                await self._queue.take(jobs, lease)
        return len(jobs) >= self.batch

    async def _claim(self, session: AsyncSession, lease: Lease) -> tuple[Lease, Sequence[J]]:
        return lease, await self._queue.claim(session, lease)
