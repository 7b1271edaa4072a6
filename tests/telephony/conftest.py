from __future__ import annotations

from collections.abc import Iterator

import pytest

from maskline.telephony.events import Leg
from tests.support.rtp import Phone


@pytest.fixture
def phones() -> Iterator[dict[Leg, Phone]]:
    """A phone for each party, on its own loopback UDP port."""
    made = {Leg.A: Phone(), Leg.B: Phone()}
    yield made
    for phone in made.values():
        phone.close()
