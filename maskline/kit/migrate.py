"""Schema migrations (Alembic), callable from the CLI and from ``serve``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from maskline.kit.db import Database


def script_location() -> Path:
    """``migrations/`` beside the package (checkout), or inside it (wheel)."""
    # maskline/kit/migrate.py: two levels up is the package (found by path, so the kit
    # imports nothing above it).
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise RuntimeError("the migrations folder is missing from this installation")


def alembic_config() -> Config:
    # No sqlalchemy.url: migrations run on the connection handed to them (``upgrade``).
    # Alembic's ini interpolation would also take a percent-encoded password ("%40")
    # for a reference and refuse it.
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    return config


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(database: Database) -> str | None:
    async with database.engine.connect() as connection:
        return await connection.run_sync(_current)


async def upgrade(database: Database) -> str:
    """Bring the schema to the newest revision; returns it."""
    config = alembic_config()

    def _upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with database.engine.connect() as connection:
        await connection.run_sync(_upgrade)
        await connection.commit()
    return head_revision()
