"""The embedded server's writer (ARCHITECTURE §3) runs its SQLite statements on the
event loop's thread (``kit/inline_sqlite.py``). While another process holds the
database's write lock (an operator's ``maskline`` command, a second server), the writer
waits for it without stopping the loop: requests that need no write are answered
meanwhile, and the writes go through once the lock is free."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

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
