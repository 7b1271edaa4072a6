"""A production-shaped deployment on this machine: one ``maskline serve`` process per role."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import Server, running_server

REDIS_URL = "redis://127.0.0.1:6379/15"


def production_env(settings_env: dict[str, str], **extra: str) -> dict[str, str]:
    """PostgreSQL (the test database) and Redis; webhooks may go to this machine."""
    return {
        **settings_env,
        "MASKLINE_REDIS_URL": REDIS_URL,
        "MASKLINE_ALLOW_PRIVATE_WEBHOOKS": "true",
        **extra,
    }


@dataclass
class Stack:
    env: dict[str, str]
    cwd: Path
    exits: ExitStack
    processes: dict[str, Server] = field(default_factory=dict)

    def start(self, name: str, role: str) -> Server:
        server = self.exits.enter_context(
            running_server(self.env, self.cwd, extra_args=("--role", role))
        )
        self.processes[name] = server
        return server

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        process = self.processes[name].process
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def url(self, name: str) -> str:
        return self.processes[name].base_url


@contextmanager
def running_stack(env: dict[str, str], cwd: Path, roles: dict[str, str]) -> Iterator[Stack]:
    """Start one process per ``name: role``; all are stopped on the way out."""
    with ExitStack() as exits:
        stack = Stack(env, cwd, exits)
        for name, role in roles.items():
            stack.start(name, role)
        yield stack


def get_data(base: str, path: str, auth: dict[str, str], **params: Any) -> Any:
    response = httpx.get(f"{base}{path}", headers=auth, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def count_calls(base: str, auth: dict[str, str], status: str) -> int:
    """How many of the organisation's calls have one of ``status`` (comma-separated)."""
    meta = httpx.get(
        f"{base}/v1/masking/call-logs",
        headers=auth,
        params={"status": status, "per_page": 1},
        timeout=10,
    ).json()["meta"]
    total: int = meta["total"]
    return total
