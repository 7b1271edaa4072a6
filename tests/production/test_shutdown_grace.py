"""SPEC §3 and §8 with split roles: an engine in its shutdown grace takes no new calls,
but still carries out a hang-up requested through the API for a live call it runs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import Cli
from tests.support.stack import get_data, production_env, running_stack
from tests.support.waits import eventually_blocking


@pytest.fixture
def env(own_database: str, cli_settings_env: dict[str, str]) -> dict[str, str]:
    if own_database.startswith("sqlite"):
        pytest.skip("production mode runs on PostgreSQL")
    # A database of its own: the engine claims every waiting call it finds (it would
    # run other tests' leftovers), and this test leaves one unclaimed.
    return production_env(
        {**cli_settings_env, "MASKLINE_DATABASE_URL": own_database},
        MASKLINE_SIM_RING_SEC="0.2",
        MASKLINE_SIM_TALK_SEC="3600",
        MASKLINE_SHUTDOWN_GRACE_SEC="600",
    )


class TestHangupDuringShutdownGrace:
    def test_a_hangup_requested_during_the_grace_ends_the_call_at_once(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        cli = Cli(env, tmp_path)
        org = cli.ok("org", "create", "grace", "--balance", "10")
        cli.ok("numbers", "add", "918076000011", "918076000012", "--org", "grace")
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        with running_stack(env, tmp_path, {"api": "api", "engine": "engine"}) as stack:
            api = stack.url("api")
            created = httpx.post(
                f"{api}/v1/masking/calls",
                headers=auth,
                json={"party_a": "9876543210", "party_b": "9123456789", "record": False},
                timeout=10,
            )
            assert created.status_code == 201, created.text
            sid = created.json()["data"]["call_sid"]
            eventually_blocking(
                lambda: get_data(api, f"/v1/masking/calls/{sid}", auth),
                lambda c: c["status"] == "in-progress",
                what=f"call {sid} in progress",
                within=30,
                interval=0.1,
            )
            engine = stack.processes["engine"]
            os.killpg(engine.process.pid, signal.SIGTERM)
            engine.output_when(lambda out: "engine stopping" in out, within=30)
            assert "engine stopping" in engine.output, engine.output

            # The engine takes no new call now: this one stays initiated.
            waiting = httpx.post(
                f"{api}/v1/masking/calls",
                headers=auth,
                json={"party_a": "9876543211", "party_b": "9123456788", "record": False},
                timeout=10,
            )
            assert waiting.status_code == 201, waiting.text

            hung_up = httpx.post(f"{api}/v1/masking/calls/{sid}/hangup", headers=auth, timeout=30)
            assert hung_up.status_code == 200, hung_up.text
            call = hung_up.json()["data"]
            assert (call["status"], call["hangup_cause"], call["hangup_by"]) == (
                "completed",
                "NORMAL_CLEARING",
                "system",
            )
            assert (call["bill_duration_sec"], call["price"]) == (60, 1.5)
            # Its last live call over, the engine ends long before its 600 s of grace.
            assert engine.process.wait(timeout=60) in (0, -signal.SIGTERM)
            untouched = get_data(
                api, f"/v1/masking/calls/{waiting.json()['data']['call_sid']}", auth
            )
            assert (untouched["status"], untouched["started_at"]) == ("initiated", None)
