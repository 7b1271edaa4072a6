"""The embedded server's writer (ARCHITECTURE §3) runs its SQLite statements on the
event loop's thread (``kit/inline_sqlite.py``). While another process holds the
database's write lock (an operator's ``maskline`` command, a second server), the writer
waits for it without stopping the loop: requests that need no write are answered
meanwhile, and the writes go through once the lock is free."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from maskline.kit.db import Database
from maskline.kit.inline_sqlite import CHECKPOINT_EVERY
from tests.conftest import Cli
from tests.support.databases import KIND
from tests.support.server import running_server

pytestmark = pytest.mark.skipif(KIND != "sqlite", reason="SQLite's write lock")


class TestWriteLockHeldElsewhere:
    def test_reads_are_answered_while_a_write_waits_and_the_write_lands_after(
        self, cli: Cli, cli_settings_env: dict[str, str], database_url: str, tmp_path: Path
    ) -> None:
        org = cli.ok("org", "create", "locked-out", "--balance", "20")
        cli.ok("numbers", "add", "918070000101", "--org", "locked-out")
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        with running_server(cli_settings_env, tmp_path) as server:
            base = server.base_url
            assert httpx.get(f"{base}/v1/masking/billing", headers=auth).status_code == 200
            holder = sqlite3.connect(
                database_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None
            )
            holder.execute("BEGIN IMMEDIATE")
            placed: list[httpx.Response] = []
            poster = threading.Thread(
                target=lambda: placed.append(
                    httpx.post(
                        f"{base}/v1/masking/calls",
                        headers=auth,
                        json={"party_a": "9876501010", "party_b": "9123401010"},
                        timeout=30,
                    )
                )
            )
            try:
                poster.start()
                # Time for the POST to reach the writer (were it slower, the test would
                # check less, never fail for it).
                time.sleep(0.5)
                # The POST's unit now waits for the lock. The loop is not blocked by it:
                # reads of the database (WAL) and the health check are answered.
                for _ in range(5):
                    read = httpx.get(f"{base}/v1/masking/billing", headers=auth, timeout=5)
                    assert (read.status_code, read.json()["data"]["reserved"]) == (200, 0)
                    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
                assert placed == []
            finally:
                holder.rollback()
                holder.close()
            poster.join(timeout=30)
            (response,) = placed
            assert response.status_code == 201, response.text
            sid = response.json()["data"]["call_sid"]
            found = httpx.get(f"{base}/v1/masking/calls/{sid}", headers=auth)
            assert found.json()["data"]["call_sid"] == sid


class TestWal:
    async def test_a_steady_stream_of_writes_starts_the_wal_over_after_each_checkpoint(
        self, tmp_path: Path
    ) -> None:
        # SQLite writes the WAL from its start again only when a write begins with every
        # frame checkpointed. Commits back to back overtook a checkpoint running beside
        # them, and the WAL (and the cost of every read) grew without end.
        path = tmp_path / "wal.db"
        db = Database(f"sqlite:///{path}")
        try:
            async with db.write() as session:
                await session.execute(text("CREATE TABLE t (n INTEGER, filler BLOB)"))
            commits = 5 * CHECKPOINT_EVERY
            for n in range(commits):
                async with db.write() as session:
                    # A few pages a commit, as a batch of calls writes: the checkpoint
                    # beside the writes takes long enough to be overtaken.
                    await session.execute(
                        text("INSERT INTO t VALUES (:n, randomblob(4000))"),
                        [{"n": n}] * 8,
                    )
        finally:
            await db.dispose()
        with contextlib.closing(sqlite3.connect(path)) as reader:
            (count,) = reader.execute("SELECT count(*) FROM t").fetchone()
            # (busy, frames in the WAL since it was last started over, checkpointed)
            _, frames, _ = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert count == 8 * commits
        # Each commit writes at least one frame: without a restart, at least ``commits``.
        assert frames <= 2 * CHECKPOINT_EVERY
