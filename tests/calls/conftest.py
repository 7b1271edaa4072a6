from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from maskline.kit.clock import ScaledClock
from maskline.settings import Settings
from tests.conftest import make_settings
from tests.support.api import Api, running_api

# Simulated seconds per real second: a 94 s call takes about one real second.
SPEED = 100.0


def call_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "sim_ring_sec": 2,
        "sim_talk_sec": 20,
        # Tests poll call status far faster than a client would.
        "call_status_rate_limit_per_minute": 100_000,
        # Webhook receivers in these tests listen on this machine.
        "allow_private_webhooks": True,
    }
    values.update(overrides)
    return make_settings(database_url, data_dir, **values)


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(
        call_settings(database_url, tmp_path / "data"), clock=ScaledClock(SPEED)
    ) as running:
        yield running


@pytest.fixture
async def long_api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """Parties that talk for an hour unless something ends the call."""
    settings = call_settings(database_url, tmp_path / "data", sim_talk_sec=3600)
    async with running_api(settings, clock=ScaledClock(SPEED)) as running:
        yield running


@pytest.fixture
async def steady_api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The wall clock: a call that rings for 120 s is still ringing when the test's next
    requests arrive, however busy the machine (at SPEED that is 1.2 real seconds)."""
    async with running_api(call_settings(database_url, tmp_path / "data")) as running:
        yield running
