"""SPEC §9 production mode: separate api, engine and worker processes on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import Cli
from tests.support.receiver import Receiver
from tests.support.stack import get_data, production_env, running_stack
from tests.support.waits import eventually_blocking
from tests.webhooks.test_delivery import LIFECYCLE


@pytest.fixture
def env(database_url: str, cli_settings_env: dict[str, str]) -> dict[str, str]:
    if database_url.startswith("sqlite"):
        pytest.skip("production mode runs on PostgreSQL")
    return production_env(
        cli_settings_env, MASKLINE_SIM_RING_SEC="0.2", MASKLINE_SIM_TALK_SEC="1.5"
    )


class TestSeparateProcesses:
    def test_a_call_accepted_by_one_api_process_is_run_by_the_engine_and_reported_by_the_worker(
        self, env: dict[str, str], tmp_path: Path, receiver: Receiver
    ) -> None:
        cli = Cli(env, tmp_path)
        org = cli.ok("org", "create", "split", "--balance", "10")
        cli.ok("numbers", "add", "918076000001", "--org", "split")
        cli.ok("webhook", "set", "--org", "split", "--url", receiver.url)
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        roles = {"api1": "api", "api2": "api", "engine": "engine", "worker": "worker"}
        with running_stack(env, tmp_path, roles) as stack:
            created = httpx.post(
                f"{stack.url('api1')}/v1/masking/calls",
                headers=auth,
                json={"party_a": "9876543210", "party_b": "9123456789"},
            )
            assert created.status_code == 201, created.text
            sid = created.json()["data"]["call_sid"]
            call = eventually_blocking(
                lambda: get_data(stack.url("api2"), f"/v1/masking/calls/{sid}", auth),
                lambda c: c["status"] == "completed" and c["recording_status"] != "pending",
                what=f"call {sid} completed with its recording settled",
                within=30,
                interval=0.1,
            )
            assert (call["hangup_cause"], call["recording_status"], call["price"]) == (
                "NORMAL_CLEARING",
                "ready",
                1.5,
            )
            received = receiver.wait(lambda rs: len(rs) >= len(LIFECYCLE), within=30)
            assert [r.json["event"] for r in received] == LIFECYCLE
            assert {r.json["data"]["call_sid"] for r in received} == {sid}
            # The engine's spool became an MP3 in the worker; any API process serves it.
            recording = get_data(stack.url("api1"), f"/v1/masking/calls/{sid}/recording", auth)
            path = recording["url"][recording["url"].index("/v1/") :]
            media = httpx.get(f"{stack.url('api2')}{path}", timeout=10)
            assert (media.status_code, media.headers["content-type"]) == (200, "audio/mpeg")
            assert len(media.content) == recording["size_bytes"]

    def test_an_api_process_announces_an_accepted_call_to_the_engines_over_notify(
        self, env: dict[str, str], database_url: str, tmp_path: Path
    ) -> None:
        cli = Cli(env, tmp_path)
        org = cli.ok("org", "create", "notify", "--balance", "10")
        cli.ok("numbers", "add", "918076000002", "--org", "notify")
        auth = {"Authorization": f"Bearer {org['api_key']}"}

        async def heard_while_posting(base: str) -> list[str]:
            heard: list[str] = []
            arrived = asyncio.Event()
            conn = await asyncpg.connect(database_url)
            try:

                def on_notify(_c: object, _pid: int, channel: str, _payload: object) -> None:
                    heard.append(channel)
                    arrived.set()

                await conn.add_listener("maskline_calls", on_notify)
                created = await asyncio.to_thread(
                    httpx.post,
                    f"{base}/v1/masking/calls",
                    headers=auth,
                    json={"party_a": "9876543210", "party_b": "9123456789"},
                )
                assert created.status_code == 201, created.text
                await asyncio.wait_for(arrived.wait(), 10)
                return heard
            finally:
                await conn.close()

        # No engine runs: only the NOTIFY can tell anyone about the call.
        with running_stack(env, tmp_path, {"api": "api"}) as stack:
            assert asyncio.run(heard_while_posting(stack.url("api"))) == ["maskline_calls"]

    def test_a_keys_request_budget_is_shared_by_every_api_process(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        cli = Cli(env, tmp_path)
        cli.ok("org", "create", "budget", "--balance", "1")
        key = cli.ok("key", "create", "--org", "budget", "--rate-limit", "4")
        auth = {"Authorization": f"Bearer {key['api_key']}"}
        with running_stack(env, tmp_path, {"api1": "api", "api2": "api"}) as stack:
            answers = [
                httpx.get(f"{stack.url(name)}/v1/masking/billing", headers=auth, timeout=10)
                for name in ("api1", "api2", "api1", "api2", "api1", "api2")
            ]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
        assert [a.headers["RateLimit-Remaining"] for a in answers[:4]] == ["3", "2", "1", "0"]
        assert answers[4].json()["error"]["code"] == "rate_limited"
