from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from maskline.kit.clock import ScaledClock
from tests.calls.conftest import SPEED, call_settings
from tests.support.api import Api, running_api


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def api(database_url: str, data_dir: Path) -> AsyncIterator[Api]:
    """Calls that talk for 20 simulated seconds, at 100 simulated seconds per second."""
    async with running_api(call_settings(database_url, data_dir), clock=ScaledClock(SPEED)) as api:
        yield api
