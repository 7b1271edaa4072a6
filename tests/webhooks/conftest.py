from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from maskline.kit.clock import ScaledClock
from maskline.webhooks import service
from tests.calls.conftest import call_settings
from tests.support.api import Api, OrgHandle, running_api

# Fast enough that the retry schedule (5 s, 5 min, 30 min, …) plays out in seconds.
SPEED = 600.0


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = call_settings(database_url, tmp_path / "data", sim_ring_sec=2, sim_talk_sec=20)
    async with running_api(settings, clock=ScaledClock(SPEED)) as running:
        yield running


async def point_at(api: Api, org: OrgHandle, url: str) -> None:
    async with api.runtime.db.write() as session:
        await service.set_url(
            session, org.id, url, box=api.runtime.box, now=api.runtime.clock.now()
        )
