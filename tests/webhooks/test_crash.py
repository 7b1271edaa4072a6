"""SPEC §6: an event committed before a SIGKILL is delivered after the restart."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Cli
from tests.support.receiver import Receiver
from tests.support.server import running_server


def _poll(fetch: Any, done: Any, *, within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(0.05)


class TestCrashSafety:
    def test_events_survive_sigkill_and_arrive_after_restart(
        self, cli: Cli, cli_settings_env: dict[str, str], tmp_path: Path, receiver: Receiver
    ) -> None:
        env = {**cli_settings_env, "MASKLINE_ALLOW_PRIVATE_WEBHOOKS": "true"}
        local = Cli(env, cli.cwd)
        org = local.ok("org", "create", "crash", "--balance", "10")
        local.ok("numbers", "add", "918072000001", "--org", "crash")
        local.ok("webhook", "set", "--org", "crash", "--url", receiver.url)
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        receiver.default = 500

        with running_server(env, tmp_path) as server:
            base = server.base_url
            call = httpx.post(
                f"{base}/v1/masking/calls",
                headers=auth,
                json={"party_a": "9876540002", "party_b": "9123456789"},
            ).json()["data"]
            sid = call["call_sid"]
            _poll(
                lambda: httpx.get(f"{base}/v1/masking/calls/{sid}", headers=auth).json()["data"],
                lambda c: c["status"] == "failed",
            )
            _poll(
                lambda: httpx.get(
                    f"{base}/v1/webhooks/deliveries", headers=auth, params={"call_sid": sid}
                ).json()["data"],
                lambda rows: any(r["attempts"] >= 1 for r in rows),
            )
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)

        assert [r.answered for r in receiver.requests] == [500]
        receiver.default = 200
        with running_server(env, tmp_path):
            requests = receiver.wait(
                lambda rs: sum(1 for r in rs if r.answered == 200) >= 2, within=30
            )
        delivered = [r.json for r in requests if r.answered == 200]
        assert [(e["event"], e["sequence"]) for e in delivered] == [
            ("call.initiated", 1),
            ("call.failed", 2),
        ]
        assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
