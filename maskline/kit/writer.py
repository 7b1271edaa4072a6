"""Group commit: many short write units of work in one transaction (ARCHITECTURE §3).

Callers hand a unit (a coroutine function of a session) to ``GroupWriter.run``
and wait. A batcher task takes every unit queued when it is free, up to
``MAX_BATCH``, and runs them one after another on one connection in one
transaction, each with a session of its own:

- units rarely fail, so a batch first runs them without savepoints; when one
  raises, the transaction is rolled back and the batch runs again with each unit
  in a SAVEPOINT of its own, where a unit that raises is rolled back to its
  savepoint and its caller gets its exception; the units before and after it
  commit (a lone unit needs no savepoint: its failure is its transaction's);
- after the last unit, one COMMIT: every caller is answered only then, so a
  crash (kill -9) loses only work nobody was told was done;
- a unit the database aborted for a deadlock or a serialization failure runs
  again in a later batch (as ``Database.transaction`` always did).

A unit may also hand the batch a write to make for all its units at once
(``defer_to_batch``): after the last unit and just before the commit, each such
step runs once with every unit's ask, e.g. one wallet UPDATE per organisation for
all the batch's new calls. A hot row it writes is then locked for the commit
alone, not from the first unit that touched it. A step that refuses a unit's ask
answers that unit's caller with its refusal, and the batch runs again without it
(the steps after it do not run: they would count the refused asks too).

Nothing waits on purpose to fill a batch: while one batch runs, the next
queues up, so the batch grows with the load and a lone unit commits at once.
On SQLite the batcher is the process's single writer; on PostgreSQL the
process's batchers (``Database``'s choice: one) each run on a connection of
their own.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

log = logging.getLogger("maskline.db")

Work = Callable[[AsyncSession], Awaitable[Any]]
# A write made once for the asks of every unit of a batch: the refusal each ask gets
# (its caller's error), or None where it was granted; in the order of the asks.
BatchStep = Callable[[AsyncConnection, Sequence[Any]], Awaitable[Sequence[BaseException | None]]]
_ASKS = "maskline.writer.asks"
# PostgreSQL keeps the first 64 subtransactions of a transaction in shared memory;
# past that, every snapshot taken anywhere consults pg_subtrans (a known slowdown).
MAX_BATCH = 64
TRANSACTION_RUNS = 5
# A unit run again waits up to this many seconds times its run number (random, so the
# units that collided do not collide again in step).
RETRY_BACKOFF_SEC = 0.02
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
MAX_CAUSE_LENGTH = 200


def is_retryable(exc: BaseException) -> bool:
    """Whether the database aborted the work for a deadlock or a serialization failure."""
    return (
        isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES
    )


def is_transient(exc: BaseException) -> bool:
    """A lost connection, or a database busy past its timeout (SQLite's write lock)."""
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    )


def cause_of(exc: DBAPIError) -> str:
    """What the database said went wrong, in one line ("deadlock detected",
    "duplicate key value violates unique constraint …"): the driver's message, never
    the statement, its parameters or PostgreSQL's DETAIL (which quotes row values)."""
    source: BaseException = exc.orig if exc.orig is not None else exc
    lines = str(source).strip().splitlines()
    return (lines[0] if lines else source.__class__.__name__)[:MAX_CAUSE_LENGTH]


# The stages of ``defer_to_batch``: a step that locks a row many units share runs in a
# later stage than the steps that lock none, and a row shared more widely in a later
# stage still (an organisation's wallet, then a masked number, which every
# organisation's calls on it share).
FIRST_STAGE = 0
WALLET_STAGE = 1
NUMBER_STAGE = 2


def defer_to_batch(
    session: AsyncSession, step: BatchStep, ask: Any, *, stage: int = FIRST_STAGE
) -> bool:
    """Leave ``ask`` to ``step``, which the batch runs once for all its units' asks just
    before its commit. False when ``session`` is not a unit's of a batch (the caller
    then makes the write itself).

    Steps run stage by stage, each stage's in the order their first ask came. A row
    locked in a later stage is held for that stage's statements and the commit alone,
    not for the earlier steps' too (concurrent batches of the same organisation, or on
    the same number, wait for it); and every batch takes rows of different stages in
    the same order, so that no two batches wait on each other in a cycle through them."""
    asks: list[tuple[BatchStep, Any, int]] | None = session.info.get(_ASKS)
    if asks is None:
        return False
    asks.append((step, ask, stage))
    return True


@contextmanager
def made_at_once(session: AsyncSession) -> Iterator[None]:
    """Within it, ``defer_to_batch`` declines: the writes are made where they are asked
    for. For a unit that isolates parts of its work in savepoints of its own, whose
    failures must happen inside them."""
    asks = session.info.pop(_ASKS, None)
    try:
        yield
    finally:
        if asks is not None:
            session.info[_ASKS] = asks


@dataclass(eq=False, slots=True)
class _Unit:
    work: Work
    transient: bool
    answer: asyncio.Future[Any]
    runs: int = 0
    # Set when the unit's savepoint was released; the caller learns it at the commit.
    result: Any = None
    done: bool = field(default=False)
    # What the unit left to the batch's steps in its latest run (``defer_to_batch``).
    asks: list[tuple[BatchStep, Any, int]] = field(default_factory=list)


class _Unsaved(Exception):
    """A unit failed outside a savepoint: the batch's transaction cannot commit."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _BatchBroken(Exception):
    """The batch's connection or transaction is unusable: no unit of it can commit."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class GroupWriter:
    """Runs write units of work in batches, one commit a batch; a unit's failure is its
    own (with a savepoint per unit when one fails).

    ``begin`` opens the batch's connection and transaction (``BEGIN IMMEDIATE`` on
    SQLite); ``turn`` is held around a whole batch (the process's SQLite write turn).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batchers: int,
        turn: asyncio.Lock | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._engine = engine
        self._batchers = batchers
        self._turn = turn
        self._max_batch = max_batch
        # None: a batcher's signal to stop, queued behind every unit accepted before it.
        self._queue: asyncio.Queue[_Unit | None] = asyncio.Queue()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # Units waiting to run again, by the timer that will queue them.
        self._retries: dict[asyncio.TimerHandle, _Unit] = {}
        self.batches = 0
        self.units = 0
        # Batches run again with a savepoint per unit, after one of them failed without.
        self.reruns = 0

    async def run(self, work: Work, *, transient: bool = False) -> Any:
        """Run ``work`` in the next batch; its result once the batch has committed."""
        if self._stopping:
            raise RuntimeError("the database was closed")
        loop = asyncio.get_running_loop()
        self._start(loop)
        unit = _Unit(work=work, transient=transient, answer=loop.create_future())
        self._queue.put_nowait(unit)
        return await unit.answer

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop and all(not task.done() for task in self._tasks):
            return
        if self._loop is not loop:
            # A new event loop (each CLI command runs one): the old queue belongs to the old.
            self._queue = asyncio.Queue()
            self._retries.clear()
        self._loop = loop
        self._tasks = [task for task in self._tasks if not task.done() and task.get_loop() is loop]
        while len(self._tasks) < self._batchers:
            self._tasks.append(loop.create_task(self._batcher(), name="maskline-writer"))

    async def stop(self) -> None:
        """Finish every unit accepted so far, then stop the batchers (never mid-batch:
        a transaction left open on a closed loop would keep SQLite's write lock)."""
        self._stopping = True
        for handle, unit in self._retries.items():
            handle.cancel()
            if not unit.answer.done():
                unit.answer.set_exception(RuntimeError("the database was closed"))
        self._retries.clear()
        tasks, self._tasks = self._tasks, []
        current = asyncio.get_running_loop()
        mine = [task for task in tasks if task.get_loop() is current and not task.done()]
        for _ in mine:
            self._queue.put_nowait(None)
        await asyncio.gather(*mine, return_exceptions=True)

    async def _batcher(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch and not self._queue.empty():
                unit = self._queue.get_nowait()
                if unit is None:
                    stop = True
                    break
                batch.append(unit)
            await self._run_batch(batch)
            if stop:
                return

    async def _run_batch(self, batch: list[_Unit]) -> None:
        live = [unit for unit in batch if not unit.answer.done()]
        if not live:
            return
        if self._turn is None:
            await self._batch_on_connection(live)
            return
        async with self._turn:
            await self._batch_on_connection(live)

    async def _batch_on_connection(self, batch: list[_Unit]) -> None:
        for unit in batch:
            unit.runs += 1
        # First without savepoints (units rarely fail); when one does, the transaction is
        # rolled back, and a batch of several runs again with a savepoint per unit.
        savepoints = False
        while batch:
            committing = False
            try:
                async with self._engine.connect() as conn:
                    await conn.begin()
                    try:
                        await self._run_units(conn, batch, savepoints=savepoints)
                    except _Unsaved as failed:
                        await conn.rollback()
                        for unit in batch:
                            unit.done, unit.result = False, None
                        if len(batch) == 1:
                            self._unit_failed(batch[0], failed.cause)
                            return
                        self.reruns += 1
                        savepoints = True
                        continue
                    if await self._run_steps(conn, batch):
                        # Some asks were refused (their callers have their answer): the
                        # others run again without them, in a new transaction.
                        await conn.rollback()
                        batch = [u for u in batch if u.done and not u.answer.done()]
                        for unit in batch:
                            unit.done, unit.result = False, None
                        continue
                    committing = True
                    await conn.commit()
            except _BatchBroken as broken:
                self._fail_batch(batch, broken.cause, committing=False)
                return
            except Exception as exc:
                self._fail_batch(batch, exc, committing=committing)
                return
            except BaseException as exc:
                self._fail_batch(batch, exc, committing=committing)
                raise
            self.batches += 1
            for unit in batch:
                if unit.done and not unit.answer.done():
                    self.units += 1
                    unit.answer.set_result(unit.result)
            return

    @staticmethod
    async def _run_steps(conn: AsyncConnection, batch: list[_Unit]) -> bool:
        """Run each step once for the asks of the batch's units that succeeded; whether
        any ask was refused (its unit is answered with the refusal)."""
        by_step: dict[BatchStep, list[tuple[_Unit, Any]]] = {}
        stages: dict[BatchStep, int] = {}
        for unit in batch:
            if unit.done and not unit.answer.done():
                for step, ask, stage in unit.asks:
                    by_step.setdefault(step, []).append((unit, ask))
                    stages[step] = max(stage, stages.get(step, stage))
        # A stable sort: stage by stage, each stage's steps in the order first asked.
        for step, asks in sorted(by_step.items(), key=lambda item: stages[item[0]]):
            outcomes = await step(conn, [ask for _, ask in asks])
            refused = False
            for (unit, _), refusal in zip(asks, outcomes, strict=True):
                if refusal is not None and not unit.answer.done():
                    unit.answer.set_exception(refusal)
                    refused = True
            if refused:
                # The batch runs again without the refused units: the later steps would
                # count their asks too (a hold for a call refused its number would take
                # the balance another call of the batch needs).
                return True
        return False

    async def _run_units(
        self, conn: AsyncConnection, batch: list[_Unit], *, savepoints: bool
    ) -> None:
        """Run the batch's units one after the other.

        With savepoints, each on a session of its own, whose rollback is its savepoint's.
        Without, every unit on one session, emptied between units (what a unit loaded is
        never another's, as with a session of its own): a session made, joined to the
        transaction, committed and closed for each unit cost it about 85 µs of CPU, as
        much as a statement (docs/benchmarks.md), and a failure here is the whole
        transaction's anyway."""
        if savepoints:
            for unit in batch:
                async with self._session(conn, savepoint=True) as session:
                    await self._run_unit(conn, unit, session, savepoint=True)
            return
        async with self._session(conn, savepoint=False) as session:
            for unit in batch:
                await self._run_unit(conn, unit, session, savepoint=False)

    @staticmethod
    @asynccontextmanager
    async def _session(conn: AsyncConnection, *, savepoint: bool) -> AsyncIterator[AsyncSession]:
        session = AsyncSession(
            bind=conn,
            # rollback_only: neither the session's flushes nor its closing end the
            # batch's transaction.
            join_transaction_mode="create_savepoint" if savepoint else "rollback_only",
            expire_on_commit=False,
        )
        try:
            yield session
        finally:
            await session.close()

    async def _run_unit(
        self, conn: AsyncConnection, unit: _Unit, session: AsyncSession, *, savepoint: bool
    ) -> None:
        """Run one unit; in a savepoint, its own failure is its caller's alone; without
        one, its failure (``_Unsaved``) is the whole transaction's."""
        if unit.answer.done():
            return
        unit.asks = []
        session.info[_ASKS] = unit.asks
        try:
            result = await unit.work(session)
            if savepoint:
                await session.commit()  # RELEASE SAVEPOINT: kept, committed with the batch
            else:
                await session.flush()  # the unit's last changes
                session.expunge_all()
        except Exception as exc:
            unit.asks.clear()
            if is_transient(exc) and conn.invalidated:
                raise _BatchBroken(exc) from None
            if not savepoint:
                raise _Unsaved(exc) from None
            try:
                await session.rollback()  # ROLLBACK TO SAVEPOINT
            except Exception as unusable:
                raise _BatchBroken(unusable) from exc
            self._unit_failed(unit, exc)
            return
        unit.result, unit.done = result, True

    def _unit_failed(self, unit: _Unit, exc: BaseException) -> None:
        if is_retryable(exc) and unit.runs < TRANSACTION_RUNS:
            assert isinstance(exc, DBAPIError)
            log.info("transaction failed (%s), running it again", cause_of(exc))
            self._again(unit)
            return
        if not unit.answer.done():
            unit.answer.set_exception(exc)

    def _fail_batch(self, batch: list[_Unit], exc: BaseException, *, committing: bool) -> None:
        """The batch did not commit (or may not have): nobody's work is acknowledged.

        Before the commit, a unit is run again when the failure is one it may be run
        again for (a deadlock; a lost connection or a busy database when it said it is
        ``transient``); during the commit, which may have landed, never.
        """
        for unit in batch:
            if unit.answer.done():
                continue
            again = not committing and (is_retryable(exc) or (unit.transient and is_transient(exc)))
            if again and unit.runs < TRANSACTION_RUNS:
                if isinstance(exc, DBAPIError):
                    log.info("transaction failed (%s), running it again", cause_of(exc))
                unit.done, unit.result = False, None
                self._again(unit)
            else:
                unit.answer.set_exception(exc)

    def _again(self, unit: _Unit) -> None:
        loop = asyncio.get_running_loop()
        delay = random.uniform(0, RETRY_BACKOFF_SEC * unit.runs)

        def requeue() -> None:
            self._retries.pop(handle, None)
            if not unit.answer.done():
                self._queue.put_nowait(unit)

        handle = loop.call_later(delay, requeue)
        self._retries[handle] = unit
