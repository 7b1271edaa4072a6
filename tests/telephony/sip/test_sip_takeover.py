"""SPEC §8: each answered leg's dialog is stored, so when an engine dies another engine's
watchdog ends the call in the database and sends BYE on both legs from the stored dialogs.

The engine that dies is a real ``maskline serve`` process, SIGKILLed once its call is
bridged. The one that takes over runs in the test; its clock is a lease (30 s) ahead, so
its watchdog finds the lease lapsed at once instead of half a minute later.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from maskline.kit.clock import SystemClock
from maskline.telephony.events import Leg
from tests.conftest import Cli
from tests.support.api import OrgHandle, ShiftedClock
from tests.support.calls import DEFAULT_LEASE, wait_for
from tests.support.rtp import Phone
from tests.support.server import running_server
from tests.support.sipp import free_udp_port
from tests.support.waits import eventually_value
from tests.telephony.sip.test_sip_calls import (
    PARTY_A,
    PARTY_B,
    answering,
    outcome,
    requests_seen,
    sip_api,
)


async def _poll_status(client: httpx.AsyncClient, sid: str, status: str) -> dict[str, Any]:
    """Poll the server's call until it has ``status`` (a deadline, not a sleep)."""

    async def fetch() -> dict[str, Any]:
        data: dict[str, Any] = (await client.get(f"/v1/masking/calls/{sid}")).json()["data"]
        return data

    return await eventually_value(
        fetch, lambda data: data["status"] == status, what=f"call {sid} {status}", within=20
    )


async def test_a_dead_engines_call_is_ended_with_bye_on_both_legs_by_another_engine(
    database_url: str,
    tmp_path: Path,
    cli: Cli,
    cli_settings_env: dict[str, str],
    phones: dict[Leg, Phone],
) -> None:
    org_row = cli.ok("org", "create", "sip-takeover", "--balance", "10")
    cli.ok("numbers", "add", "918073000001", "--org", "sip-takeover")
    org = OrgHandle(
        str(org_row["id"]), "sip-takeover", str(org_row["api_key"]), str(org_row["webhook_secret"])
    )
    # Both parties stay on the line until someone sends them BYE.
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=("wait_bye",))
    env = {
        **cli_settings_env,
        "MASKLINE_CARRIER": "sip",
        "MASKLINE_SIP_TRUNK": sipp.trunk,
        "MASKLINE_SIP_BIND": f"127.0.0.1:{free_udp_port()}",
        "MASKLINE_RTP_PORTS": "23000-23099",
    }
    try:
        with running_server(env, tmp_path, extra_args=("--role", "all")) as server:
            async with httpx.AsyncClient(base_url=server.base_url, headers=org.auth) as client:
                placed = (
                    await client.post(
                        "/v1/masking/calls", json={"party_a": PARTY_A, "party_b": PARTY_B}
                    )
                ).json()["data"]
                sid = placed["call_sid"]
                await _poll_status(client, sid, "in-progress")
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
        # Nobody has hung up yet: the dead engine sent no BYE.
        assert "BYE" not in requests_seen(sipp)

        ahead = ShiftedClock(SystemClock(), DEFAULT_LEASE + timedelta(seconds=1))
        async with sip_api(database_url, tmp_path, sipp, clock=ahead) as api:
            call = await wait_for(api, org, sid, within=30)
            assert await sipp.finished() == 0, sipp.errors()
    finally:
        sipp.close()

    assert outcome(call) == ("completed", "SYSTEM_SHUTDOWN", "system", None, None, 60, 1.5)
    # A and B each got a BYE in their own dialog, and answered it.
    byes = [m for m in sipp.messages() if m.received and m.first_line.startswith("BYE")]
    assert sorted(m.header("To") or "" for m in byes) == sorted(
        m.header("To") or ""
        for m in sipp.messages()
        if m.received and m.first_line.startswith("ACK")
    )
    assert len({m.header("Call-ID") for m in byes}) == 2
    assert sorted(requests_seen(sipp)) == ["ACK", "ACK", "BYE", "BYE", "INVITE", "INVITE"]
