from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from maskline.settings import Settings
from tests.support.api import Api, running_api
from tests.support.cli import CliResult, run_cli
from tests.support.databases import KIND, fresh_database
from tests.support.receiver import Receiver, receiving

TEST_SECRET_KEY = "test-secret-key-not-for-production"

# Fixtures that reach the database under test (any fixture that needs them does too:
# pytest lists the whole closure in ``item.fixturenames``).
DATABASE_FIXTURES = frozenset({"database_url", "own_database"})


# What a test module uses to run SIPp or a phone, or a program as a process: its tests
# are marked ``sip`` or ``subprocess`` (a marker written on a test counts too).
SIP_NAMES = frozenset({"Sipp", "Baresip", "Kamailio", "sip_api"})
PROCESS_NAMES = frozenset(
    {"run_cli", "run_installed", "running_server", "running_stack", "subprocess", "Cli"}
)


def uses_database(item: pytest.Item) -> bool:
    if item.get_closest_marker("database") is not None:
        return True
    return bool(DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The test layers (docs/decisions.md): a test that reaches no database runs in the
    first database's session only (``MASKLINE_TEST_DATABASE_FREE=skip`` in the second),
    and so does the browser suite, whose subject is the pages (the server under them is
    tested over HTTP on both databases);
    a ``postgres_only`` test is skipped on SQLite; ``sip`` and ``subprocess`` are added
    from what the test's module uses."""
    skip_free = os.environ.get("MASKLINE_TEST_DATABASE_FREE") == "skip"
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        names = vars(item.module) if isinstance(item, pytest.Function) and item.module else {}
        if SIP_NAMES & names.keys():
            item.add_marker(pytest.mark.sip)
        if "cli" in getattr(item, "fixturenames", ()) or PROCESS_NAMES & names.keys():
            item.add_marker(pytest.mark.subprocess)
        if KIND != "postgresql" and item.get_closest_marker("postgres_only") is not None:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL"))
        if skip_free and (not uses_database(item) or item.get_closest_marker("browser")):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = _longest_first(kept)


# The order in which modules are handed out: xdist gives each worker the next tests in
# collection order as it frees up, so a module that runs for a minute (a process killed
# and its leases waited out, a real phone, the browser) left to the end keeps the run
# going with the other workers idle. Its tests are started first instead, and the
# in-process tests, a second or less each, fill the end.
HEAVY_MARKS = (("slow",), ("sip", "browser", "subprocess"))


def _weight(item: pytest.Item) -> int:
    for rank, names in enumerate(HEAVY_MARKS):
        if any(item.get_closest_marker(name) is not None for name in names):
            return rank
    return len(HEAVY_MARKS)


def _longest_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The modules with the heaviest tests first; a module's tests stay together and in
    order (its module-scoped fixtures are set up once per worker, as before)."""
    modules: dict[str, int] = {}
    for item in items:
        module = item.nodeid.partition("::")[0]
        modules[module] = min(modules.get(module, len(HEAVY_MARKS)), _weight(item))
    return sorted(items, key=lambda item: modules[item.nodeid.partition("::")[0]])


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database for the session; tests isolate themselves by organisation."""
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        yield url


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET_KEY,
        "data_dir": data_dir,
        "redis_url": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[str]:
    """A database for this test alone, for tests that see every organisation's rows
    (the metrics, the shared masked-number pool)."""
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real local webhook endpoint."""
    with receiving() as running:
        yield running


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "data")


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        yield running


@pytest.fixture
def cli_settings_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "MASKLINE_DATABASE_URL": database_url,
        "MASKLINE_SECRET_KEY": TEST_SECRET_KEY,
        "MASKLINE_DATA_DIR": str(tmp_path / "data"),
    }


class Cli:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def __call__(self, *args: str) -> CliResult:
        return run_cli(*args, env=self.env, cwd=self.cwd)

    def ok(self, *args: str) -> dict[str, object]:
        result = self(*args, "--json")
        assert result.code == 0, result.stderr
        assert result.stderr == ""
        payload: dict[str, object] = result.json
        return payload

    # From a coroutine, the command runs in a thread: an app serving on this event loop
    # may be inside a write transaction (SQLite's lock) that only the loop can finish.
    async def run_async(self, *args: str) -> CliResult:
        return await asyncio.to_thread(self, *args)

    async def ok_async(self, *args: str) -> dict[str, object]:
        return await asyncio.to_thread(self.ok, *args)


@pytest.fixture
def cli(cli_settings_env: dict[str, str], tmp_path: Path) -> Cli:
    return Cli(cli_settings_env, tmp_path)
