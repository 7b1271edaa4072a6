"""The interop tests run on uvloop, the loop the relay runs on in production
(``maskline serve``): libuv reads a socket's queued datagrams in one wake-up, where
asyncio's default loop reads one per pass, so on a loaded machine the default loop
would hold back a phone's media behind the test's own work."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], uvloop.Loop]]:
    return {"uvloop": uvloop.new_event_loop}
