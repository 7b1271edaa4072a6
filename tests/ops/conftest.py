from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import fresh_database


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[str]:
    """A database for this test alone: the metrics count every organisation's rows."""
    with fresh_database(tmp_path) as url:
        yield url
