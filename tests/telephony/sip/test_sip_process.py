"""The sip carrier in a process of its own (``MASKLINE_SIP_PROCESS``), against SIPp.

The calls themselves (answered, recorded, busy, re-INVITE, B's BYE) run in both forms in
``test_sip_calls.py``; here is what only the process form has: the round trip before the
engine asks for B, the SIP process dying, its signals, its start failing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import pytest

from maskline.kit.clock import SystemClock
from maskline.telephony.carrier import Carrier
from maskline.telephony.events import Cause, Leg, LegAnswered, LegDialled, LegEvent, LegRinging
from maskline.telephony.sip.process import SipProcessCarrier
from tests.conftest import make_settings
from tests.support.api import Api, running_api
from tests.support.calls import place, wait_for
from tests.support.rtp import Phone
from tests.support.waits import eventually
from tests.telephony.sip.test_sip_calls import (
    MEDIA_TIMED_OUT,
    PARTY_A,
    PARTY_B,
    answering,
    dial_a_then_b,
    dialogs_seen,
    no_pool_number,
    outcome,
    sip_api,
    sip_settings,
)


def process_of(api: Api) -> SipProcessCarrier:
    engine = api.runtime.engine
    assert engine is not None
    carrier: Carrier = engine.carriers["sip"]
    assert isinstance(carrier, SipProcessCarrier)
    return carrier


def sip_processes() -> list[int]:
    """This process's children that are SIP processes, running or not yet reaped."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"maskline.telephony.sip.child" in command:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_b_sent_at_the_answer_and_not_asked_for_after_the_round_trip_is_cancelled(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # B's INVITE leaves at A's 200 OK, in the SIP process. The engine (the test) takes the
    # answer in and does not ask for B: told so after the sink returns, the SIP process
    # cancels B, and nothing of B is ever reported.
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=(), b_before_answer=("cancelled",))
    heard: list[LegEvent] = []
    carrier = SipProcessCarrier(
        sip_settings(database_url, tmp_path, sipp), SystemClock(), is_pool_number=no_pool_number
    )
    await carrier.start(heard.append)
    try:
        dial_a_then_b(carrier)
        await eventually(lambda: any(isinstance(e, LegAnswered) for e in heard), within=10)
        carrier.hangup("CAtest", Leg.A, cause=Cause.NORMAL_CLEARING, at=SystemClock().now())
        assert await sipp.finished() == 0, sipp.errors()
    finally:
        await carrier.close()
        sipp.close()
    assert {type(e) for e in heard[:2]} == {LegDialled, LegRinging}
    assert [(type(e), e.leg) for e in heard[2:]] == [(LegAnswered, Leg.A)]
    answered = heard[-1]
    assert isinstance(answered, LegAnswered)
    assert answered.next_sent_sec is not None
    assert dialogs_seen(sipp) == [["INVITE", "ACK", "BYE"], ["INVITE", "CANCEL", "ACK"]]
    assert carrier.pid is not None
    assert not alive(carrier.pid)


async def test_the_sip_process_ignores_ctrl_c_and_hangs_its_legs_up_when_the_engine_stops(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # A terminal's Ctrl-C reaches the whole process group. The SIP process outlives it, so
    # the engine's shutdown can still end its calls: both legs get our BYE.
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=("wait_bye",))
    try:
        async with sip_api(database_url, tmp_path, sipp, sip_process=True) as api:
            pid = process_of(api).pid
            assert pid is not None
            assert pid != os.getpid()
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            sid = placed["call_sid"]
            await wait_for(api, org, sid, ("in-progress",))
            os.kill(pid, signal.SIGINT)
            os.kill(pid, signal.SIGTERM)
            await asyncio.sleep(0.5)  # what the signals would have done, given the time
            assert alive(pid)
            ready = await api.client.get("/readyz")
            assert ready.status_code == 200
        assert await sipp.finished() == 0, sipp.errors()
    finally:
        sipp.close()
    assert not alive(pid)
    assert sip_processes() == []
    assert sorted(dialogs_seen(sipp)) == [["INVITE", "ACK", "BYE"], ["INVITE", "ACK", "BYE"]]


async def test_a_killed_sip_process_ends_its_calls_and_another_carries_the_next(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # The SIP process that would hang the first call's legs up is gone: the engine ends
    # that bridged call as its media having timed out, billed, starts another SIP
    # process, which sends both legs their BYE from their dialogs, and the next call
    # goes through it.
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=("wait_bye",), calls=2)
    try:
        async with sip_api(database_url, tmp_path, sipp, sip_process=True) as api:
            carrier = process_of(api)
            first_pid = carrier.pid
            assert first_pid is not None
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            sid = placed["call_sid"]
            await wait_for(api, org, sid, ("in-progress",))
            os.kill(first_pid, signal.SIGKILL)
            call = await wait_for(api, org, sid, within=15)
            await eventually(lambda: carrier.ready, within=15)
            assert carrier.pid not in (None, first_pid)
            assert (await api.client.get("/readyz")).status_code == 200
            again = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            await wait_for(api, org, again["call_sid"], ("in-progress",))
            hung_up = await api.client.post(
                f"/v1/masking/calls/{again['call_sid']}/hangup", headers=org.auth
            )
            assert hung_up.status_code == 200
            second = await wait_for(api, org, again["call_sid"])
            assert await sipp.finished() == 0, sipp.errors()
    finally:
        sipp.close()
    assert outcome(call) == MEDIA_TIMED_OUT
    assert outcome(second)[:3] == ("completed", "NORMAL_CLEARING", "system")


async def test_a_taken_sip_port_fails_the_start_with_the_sip_processs_error(
    database_url: str, tmp_path: Path
) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    started: list[SipProcessCarrier] = []
    try:
        settings = make_settings(
            database_url,
            tmp_path / "data",
            carrier="sip",
            sip_process=True,
            sip_trunk="127.0.0.1:5999",
            sip_bind=f"127.0.0.1:{taken.getsockname()[1]}",
        )
        with pytest.raises(OSError, match="in use"):
            async with running_api(settings) as api:
                started.append(process_of(api))
    finally:
        taken.close()
    assert started == []  # the engine never started
    assert sip_processes() == []
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
