"""maskline's set-ups under benchmark, each a context manager that starts it on a fresh
database and stops it afterwards: the production roles on PostgreSQL (``API_PROCESSES``
``maskline serve --role api`` processes with Redis rate limits, and with ``stack`` an
engine and a worker), and the embedded ``maskline serve`` on SQLite (api, engine and worker
in one process). ``bench/post.py``, ``bench/post_profile.py`` and ``bench/e2e.py`` share them.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.calls import server_env, unlimited_key
from tests.support.databases import fresh_database
from tests.support.server import running_server

API_PROCESSES = 2
REDIS_URL = "redis://127.0.0.1:6379/14"
# The organisation's masked numbers unless told (unlimited_key's default).
NUMBERS = ("918099000001",)


@dataclass(frozen=True)
class Running:
    """maskline running: its processes by role (``api 1``, ``engine``, ``embedded``, …),
    the ``host:port`` of each API process, the key of an organisation no limit gets in the
    way of, the database, the environment the processes run with (for the CLI), and each
    process's base URL by role (for its ``/metrics``)."""

    processes: dict[str, subprocess.Popen[str]]
    addresses: list[str]
    key: str
    database_url: str
    env: dict[str, str]
    base_urls: dict[str, str] = field(default_factory=dict)

    @property
    def api_processes(self) -> list[subprocess.Popen[str]]:
        return [
            p for role, p in self.processes.items() if not role.startswith(("engine", "worker"))
        ]


def _address(base_url: str) -> str:
    return base_url.removeprefix("http://")


@contextlib.contextmanager
def postgresql_apis(
    tmp: Path, *, stack: bool, numbers: tuple[str, ...] = NUMBERS, **extra_env: str
) -> Iterator[Running]:
    """``API_PROCESSES`` maskline API processes (and, with ``stack``, an engine and a worker)
    on a fresh PostgreSQL database, with Redis for the rate limits; ``extra_env`` is more
    of their environment (``MASKLINE_…``), ``numbers`` the organisation's masked numbers."""
    with fresh_database(tmp, kind="postgresql") as url:
        env = server_env(url, tmp, MASKLINE_REDIS_URL=REDIS_URL, **extra_env)
        key = unlimited_key(env, numbers=numbers)
        with contextlib.ExitStack() as running:
            servers = {
                f"api {n}": running.enter_context(
                    running_server(env, tmp, extra_args=("--role", "api"), installed=True)
                )
                for n in range(1, API_PROCESSES + 1)
            }
            addresses = [_address(s.base_url) for s in servers.values()]
            for role in ("engine", "worker") if stack else ():
                servers[role] = running.enter_context(
                    running_server(env, tmp, extra_args=("--role", role), installed=True)
                )
            processes = {role: s.process for role, s in servers.items()}
            base_urls = {role: s.base_url for role, s in servers.items()}
            yield Running(processes, addresses, key, url, env, base_urls)


@contextlib.contextmanager
def embedded_sqlite(
    tmp: Path, *, numbers: tuple[str, ...] = NUMBERS, **extra_env: str
) -> Iterator[Running]:
    """One ``maskline serve`` (api, engine and worker) on a fresh SQLite file."""
    with fresh_database(tmp, kind="sqlite") as url:
        env = server_env(url, tmp, **extra_env)
        key = unlimited_key(env, numbers=numbers)
        with running_server(env, tmp, installed=True) as server:
            yield Running(
                {"embedded": server.process},
                [_address(server.base_url)],
                key,
                url,
                env,
                {"embedded": server.base_url},
            )
