"""The end-to-end probe's webhook receiver (``bench/nginx.py``) counts what reached each
path from nginx's own access log: each ``webhook-id`` once, repeats as duplicates."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.nginx import nginx_receiver
from tests.support.waits import eventually_blocking


@pytest.mark.subprocess
def test_arrivals_by_path_and_webhook_id(tmp_path: Path) -> None:
    with nginx_receiver(tmp_path) as receiver:
        for path, webhook_id in (
            ("r1", "evt_1"),
            ("r1", "evt_2"),
            ("r2", "evt_3"),
            ("r1", "evt_1"),
        ):
            response = httpx.post(
                receiver.url(path),
                content=b'{"event":"call.ringing"}',
                headers={"webhook-id": webhook_id},
            )
            assert response.status_code == 204
        assert httpx.post(f"http://127.0.0.1:{receiver.port}/elsewhere").status_code == 404
        r1 = eventually_blocking(
            lambda: receiver.arrivals("r1"), lambda seen: seen.duplicates == 1, what="r1's repeat"
        )
        assert sorted(r1.first) == ["evt_1", "evt_2"]
        # httpx.post opens a connection for each request.
        assert r1.connections == 3
        assert list(receiver.arrivals("r2").first) == ["evt_3"]
        assert receiver.arrivals("r3").first == {}
