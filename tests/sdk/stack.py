"""A real ``maskline serve`` for the client libraries' tests, its signed recording URLs
pointing at a proxy that can drop a download part-way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import TEST_SECRET_KEY
from tests.sdk.proxy import DroppingProxy, dropping_proxy
from tests.support.cli import run_cli
from tests.support.server import free_port, running_server


@dataclass
class Stack:
    base_url: str
    port: int
    env: dict[str, str]
    cwd: Path
    recordings_proxy: DroppingProxy

    def cli(self, *args: str) -> dict[str, Any]:
        result = run_cli(*args, "--json", env=self.env, cwd=self.cwd)
        assert result.code == 0, result.stderr
        payload: dict[str, Any] = result.json
        return payload

    def org(self, *extra: str, numbers: int = 1, rate_limit: int = 100_000) -> str:
        """A new organisation with ``numbers`` masked numbers; an API key for it (its
        name and webhook secret are left in ``name`` and ``webhook_secret``)."""
        name = f"sdk-{uuid.uuid4().hex[:8]}"
        balance = () if "--balance" in extra else ("--balance", "100000")
        created = self.cli("org", "create", name, *balance, *extra)
        self.webhook_secret = str(created["webhook_secret"])
        if numbers:
            pool = [f"91807{uuid.uuid4().int % 10**7:07d}" for _ in range(numbers)]
            self.cli("numbers", "add", *pool, "--org", name)
        key = self.cli("key", "create", "--org", name, "--rate-limit", str(rate_limit))
        self.name = name
        return str(key["api_key"])


@contextmanager
def sdk_stack(
    database_url: str, tmp: Path, *, recording_cuts: dict[int, int] | None = None
) -> Iterator[Stack]:
    """``recording_cuts``: the recordings proxy's connections to cut (``DroppingProxy``).
    ``database_url`` should be the stack's own: its engine runs every call in the
    database, and its worker delivers every webhook, whoever's test they belong to."""
    port = free_port()
    with dropping_proxy(port, recording_cuts or {}) as proxy:
        env = {
            "MASKLINE_DATABASE_URL": database_url,
            "MASKLINE_SECRET_KEY": TEST_SECRET_KEY,
            "MASKLINE_DATA_DIR": str(tmp / "data"),
            "MASKLINE_SIM_RING_SEC": "0.1",
            "MASKLINE_SIM_TALK_SEC": "1",
            "MASKLINE_ALLOW_PRIVATE_WEBHOOKS": "true",
            # Signed recording URLs point at the proxy, which can drop a download.
            "MASKLINE_PUBLIC_URL": proxy.url,
        }
        with running_server(env, tmp, port=port) as server:
            yield Stack(server.base_url, port, env, tmp, proxy)
