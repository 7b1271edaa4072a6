"""What the group writer costs a unit of work: CPU per unit through ``Database.transaction``
against the same statements sent bare, in the same run.

Each unit is one ``INSERT`` through its session; ``CLIENTS`` callers send ``UNITS`` of them
in all, each waiting for its unit's commit before the next (as POSTs and the engine's
runners do), so the writer's batches grow as they do under load. The yardstick is the
same ``INSERT``s on one SQLAlchemy connection, committed in transactions of the writer's
average batch size: the statements' own cost, with no writer, session or caller. The
figure is this process's CPU (user and system) per unit, not wall time: the machine is
shared, and the database's own CPU is not ours. The two ways run alternately, ``ROUNDS``
times, so a change in the machine's load shows as spread rather than as a difference.

``python -m bench.writer [sqlite|postgresql ...]``
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import uvloop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.db import Database
from tests.support.databases import fresh_database

UNITS = 6000
CLIENTS = 32
WARMUP = 1600
ROUNDS = 3
INSERT = text("INSERT INTO writer_probe (id, note) VALUES (:id, 'x')")


async def _through_the_writer(db: Database, ids: Iterator[int], units: int) -> tuple[float, float]:
    """CPU µs a unit, and units per batch."""

    async def unit(session: AsyncSession) -> None:
        await session.execute(INSERT, {"id": next(ids)})

    async def caller(count: int) -> None:
        for _ in range(count):
            await db.transaction(unit)

    batches = db.writer.batches
    started = time.process_time()
    await asyncio.gather(*[caller(units // CLIENTS) for _ in range(CLIENTS)])
    cpu = time.process_time() - started
    done = units // CLIENTS * CLIENTS
    return cpu / done * 1e6, done / max(1, db.writer.batches - batches)


async def _bare(db: Database, ids: Iterator[int], units: int, batch: int) -> float:
    """CPU µs a statement on one connection of the writer's engine (on SQLite, the
    inline one), committed every ``batch``."""
    started = time.process_time()
    async with db.engines[-1].connect() as conn:
        for first in range(0, units, batch):
            async with conn.begin():
                for _ in range(min(batch, units - first)):
                    await conn.execute(INSERT, {"id": next(ids)})
    return (time.process_time() - started) / units * 1e6


async def _rounds(url: str) -> str:
    db = Database(url)
    ids = iter(range(10**9))
    try:
        async with db.write() as session:
            await session.execute(text("CREATE TABLE writer_probe (id int PRIMARY KEY, note text)"))
        _, size = await _through_the_writer(db, ids, WARMUP)
        await _bare(db, ids, WARMUP, round(size))
        writer: list[float] = []
        sizes: list[float] = []
        bare: list[float] = []
        for _ in range(ROUNDS):
            cpu, size = await _through_the_writer(db, ids, UNITS)
            writer.append(cpu)
            sizes.append(size)
            bare.append(await _bare(db, ids, UNITS, max(1, round(size))))
    finally:
        await db.dispose()
    return (
        f"through the writer: {_spread(writer)} µs of CPU a unit "
        f"({statistics.mean(sizes):.1f} units a batch); the same INSERTs bare, committed "
        f"in batches of that size: {_spread(bare)} µs a statement"
    )


def _spread(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}–{high:.0f}"


def writer_cost(kind: str) -> str:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), kind=kind) as url:
        figures = uvloop.run(_rounds(url))
    return (
        f"group writer, {kind}: {UNITS} one-INSERT units from {CLIENTS} callers, "
        f"{ROUNDS} rounds\n{figures}"
    )


def main() -> None:
    for kind in sys.argv[1:] or ["sqlite", "postgresql"]:
        print(writer_cost(kind), flush=True)


if __name__ == "__main__":
    main()
