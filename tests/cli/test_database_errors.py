"""SPEC §9: a command the database fails answers one line naming the database's reason."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.conftest import TEST_SECRET_KEY, Cli


def cli_on(database_url: str, tmp_path: Path) -> Cli:
    env = {
        "MASKLINE_DATABASE_URL": database_url,
        "MASKLINE_SECRET_KEY": TEST_SECRET_KEY,
        "MASKLINE_DATA_DIR": str(tmp_path / "data"),
        "MASKLINE_ALLOW_PRIVATE_WEBHOOKS": "true",
    }
    return Cli(env, tmp_path)


class TestDatabaseErrors:
    def test_a_database_that_cannot_be_opened_says_why(self, tmp_path: Path) -> None:
        cli = cli_on("sqlite:////nonexistent-dir/maskline.db", tmp_path)
        result = cli("webhook", "show", "--org", "anyone")
        assert (result.code, result.stderr) == (
            1,
            "error: the database cannot be reached or used: unable to open database file\n",
        )

    @pytest.mark.postgres_only  # PostgreSQL's lock_timeout
    async def test_a_refused_change_names_the_database_reason_not_the_driver_class(
        self, own_database: str, tmp_path: Path
    ) -> None:
        cli = cli_on(own_database, tmp_path)
        await asyncio.to_thread(cli.ok, "org", "create", "cli-db-cause")
        name = urlsplit(own_database).path.lstrip("/")
        holder = await asyncpg.connect(own_database)
        try:
            await holder.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '200ms'")
            async with holder.transaction():
                # Another transaction holds the endpoint row that `webhook set` must lock.
                await holder.execute("SELECT 1 FROM webhook_endpoints FOR UPDATE")
                result = await asyncio.to_thread(
                    cli, "webhook", "set", "--org", "cli-db-cause", "--url", "http://127.0.0.1:9/"
                )
        finally:
            await holder.close()
        assert (result.code, result.stderr) == (
            1,
            "error: the database refused the change: canceling statement due to lock timeout\n",
        )
