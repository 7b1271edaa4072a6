"""SPEC §6: an event committed before a SIGKILL is delivered after the restart."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from maskline.webhooks.tasks import LEASE
from tests.conftest import Cli
from tests.support.receiver import Answer, Receiver
from tests.support.server import running_server
from tests.support.waits import eventually_blocking


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
            eventually_blocking(
                lambda: httpx.get(f"{base}/v1/masking/calls/{sid}", headers=auth).json()["data"],
                lambda c: c["status"] == "failed",
                what=f"call {sid} failed",
                within=30,
                interval=0.05,
            )
            eventually_blocking(
                lambda: httpx.get(
                    f"{base}/v1/webhooks/deliveries", headers=auth, params={"call_sid": sid}
                ).json()["data"],
                lambda rows: any(r["attempts"] >= 1 for r in rows),
                what="a first delivery attempt",
                within=30,
                interval=0.05,
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

    # Slow: the killed worker's leases (60 s) must lapse before the held attempts go again.
    @pytest.mark.slow
    def test_a_kill_mid_flight_loses_no_event_of_many_calls(
        self, cli: Cli, cli_settings_env: dict[str, str], tmp_path: Path, receiver: Receiver
    ) -> None:
        env = {**cli_settings_env, "MASKLINE_ALLOW_PRIVATE_WEBHOOKS": "true"}
        local = Cli(env, cli.cwd)
        org = local.ok("org", "create", "crash-many", "--balance", "100")
        numbers = [f"9180720001{n:02d}" for n in range(10)]
        local.ok("numbers", "add", *numbers, "--org", "crash-many")
        local.ok("webhook", "set", "--org", "crash-many", "--url", receiver.url)
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        # The first attempts are held unanswered: the kill finds them in flight.
        release = threading.Event()
        receiver.script = [Answer(200, hold=release) for _ in range(4)]
        sids = []
        try:
            with running_server(env, tmp_path) as server:
                for n in range(10):
                    response = httpx.post(
                        f"{server.base_url}/v1/masking/calls",
                        headers=auth,
                        # A party the sim fails at once: call.initiated, then call.failed.
                        json={"party_a": "9876540002", "party_b": f"91234567{n:02d}"},
                    )
                    assert response.status_code == 201, response.text
                    sids.append(response.json()["data"]["call_sid"])
                receiver.wait(lambda rs: len(rs) >= 4, within=30)
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait(timeout=10)
        finally:
            release.set()

        expected = {(sid, event) for sid in sids for event in ("call.initiated", "call.failed")}
        with running_server(env, tmp_path):
            requests = receiver.wait(
                lambda rs: (
                    {(r.json["call_sid"], r.json["event"]) for r in rs if r.answered == 200}
                    >= expected
                ),
                # The held attempts go again once the killed worker's leases lapse (LEASE
                # after their claim, which the restart follows by about a second): a
                # deadline of the lease alone left that second as the whole margin.
                within=LEASE.total_seconds() + 30,
            )
        # At least once: every event arrived; a repeat carries the same webhook-id.
        by_id: dict[str, set[tuple[str, str]]] = {}
        for r in requests:
            by_id.setdefault(r.headers["webhook-id"], set()).add(
                (r.json["call_sid"], r.json["event"])
            )
        assert all(len(events) == 1 for events in by_id.values())
        assert set().union(*by_id.values()) == expected
        assert len(by_id) == len(expected)
