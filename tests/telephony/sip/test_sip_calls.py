"""The sip carrier against SIPp on loopback (SPEC §8): SIPp is the trunk, and the test
plays the phones' media to the relay, so every leg is real SIP and real RTP."""

from __future__ import annotations

import asyncio
import gc
import itertools
import socket
import struct
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from maskline.calls.lifecycle import load_call
from maskline.kit.clock import Clock, ScaledClock, SystemClock
from maskline.settings import Settings
from maskline.telephony.carrier import Carrier, Dial
from maskline.telephony.events import (
    Cause,
    Dialog,
    Leg,
    LegAnswered,
    LegDialled,
    LegEvent,
    LegRinging,
)
from maskline.telephony.media.g711 import G711, to_pcm16
from maskline.telephony.media.relay import Endpoint, UdpRelay
from maskline.telephony.sim.audio import TONE_HZ, tone_frames
from maskline.telephony.sip import agents
from maskline.telephony.sip.carrier import SipCarrier
from maskline.telephony.sip.stack import SipLoop, UacEvent
from tests.conftest import make_settings
from tests.support.api import Api, running_api
from tests.support.audio import decode_mp3, dominant_hz
from tests.support.calls import billing, place, wait_for
from tests.support.receiver import Receiver, until
from tests.support.rtp import Phone, pcmu
from tests.support.sipp import Sipp, fragment, free_udp_port
from tests.support.waits import eventually, eventually_value
from tests.webhooks.test_delivery import LIFECYCLE

PARTY_A, PARTY_B = "9876543210", "9123456789"
PACKETS = 100  # two seconds of 20 ms frames per phone
# A bridged call ended because its media stopped: billed for its first minute.
MEDIA_TIMED_OUT = ("completed", "RECOVERY_ON_TIMER_EXPIRE", "system", None, None, 60, 1.5)


def sip_settings(
    database_url: str,
    tmp_path: Path,
    sipp: Sipp | None,
    *,
    sip_port: int | None = None,
    **overrides: object,
) -> Settings:
    """The sip carrier's settings, SIPp (or nothing, port 9) as the trunk."""
    values: dict[str, object] = {
        "carrier": "sip",
        "sip_trunk": sipp.trunk if sipp is not None else "127.0.0.1:9",
        "sip_bind": f"127.0.0.1:{sip_port or free_udp_port()}",
        "rtp_ports": "22000-22999",
        "allow_private_webhooks": True,
        "call_status_rate_limit_per_minute": 100_000,
    }
    return make_settings(database_url, tmp_path / "data", **(values | overrides))


@asynccontextmanager
async def sip_api(
    database_url: str,
    tmp_path: Path,
    sipp: Sipp | None,
    *,
    sip_port: int | None = None,
    clock: Clock | None = None,
    **overrides: object,
) -> AsyncIterator[Api]:
    settings = sip_settings(database_url, tmp_path, sipp, sip_port=sip_port, **overrides)
    async with running_api(settings, clock=clock) as api:
        yield api


def carrier_of(api: Api) -> SipCarrier:
    engine = api.runtime.engine
    assert engine is not None
    carrier = engine.carriers["sip"]
    assert isinstance(carrier, SipCarrier)
    return carrier


def relay_of(api: Api) -> UdpRelay:
    engine = api.runtime.engine
    assert engine is not None
    carrier = engine.carriers["sip"]
    assert isinstance(carrier, SipCarrier)
    return carrier.relay


async def talk(phone: Phone, to: Endpoint, hz: int) -> None:
    """Send PACKETS of a tone, paced like a phone (20 ms apart)."""
    encoded = pcmu(tone_frames(hz, 0, PACKETS))
    for seq in range(PACKETS):
        header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xA1 if hz == 440 else 0xB2)
        phone.send(header + encoded[seq * 160 : (seq + 1) * 160], to)
        await asyncio.sleep(0.02)  # pacing, not a wait: a phone's 20 ms frames


def answering(
    tmp_path: Path,
    phones: dict[Leg, Phone],
    *,
    a: tuple[str, ...],
    b: tuple[str, ...],
    b_before_answer: tuple[str, ...] = (),
    pause_ms: int = 1000,
    options: tuple[str, ...] = (),
    timeout_sec: int = 60,
    variables: dict[str, str] | None = None,
    calls: int = 1,
) -> Sipp:
    """SIPp answering both legs, each party then doing the fragments named (``variables``
    are the fragments' own SIPp globals)."""
    return Sipp(
        "answer.xml",
        tmp_path / "sipp",
        calls=2 * calls,
        pause_ms=pause_ms,
        variables={
            "aport": str(phones[Leg.A].port),
            "bport": str(phones[Leg.B].port),
            **(variables or {}),
        },
        fill={
            "A_ANSWERED": "".join(fragment(name) for name in a),
            "B_ANSWERED": "".join(fragment(name) for name in b),
            "B_BEFORE_ANSWER": "".join(fragment(name) for name in b_before_answer),
        },
        options=options,
        timeout_sec=timeout_sec,
    )


def requests_seen(sipp: Sipp) -> list[str]:
    """The methods and responses SIPp received from us, in order, each once.

    A retransmission (the same start line in the same dialog and CSeq) is the same message:
    on a loaded machine SIPp may answer after our timer A fires, which is correct SIP.
    """
    seen: set[tuple[str, str | None, str | None]] = set()
    methods = []
    for m in sipp.messages():
        key = (m.first_line, m.header("Call-ID"), m.header("CSeq"))
        if m.received and key not in seen:
            seen.add(key)
            methods.append(m.first_line.split(" ")[0])
    return methods


def dialogs_seen(sipp: Sipp) -> list[list[str]]:
    """`requests_seen` of each dialog on its own, dialogs in the order they began: what
    the parties do in one dialog does not wait for the other's, so only each dialog's
    own order is ours to assert."""
    dialogs: dict[str | None, list[str]] = {}
    seen: set[tuple[str, str | None, str | None]] = set()
    for m in sipp.messages():
        call_id = m.header("Call-ID")
        key = (m.first_line, call_id, m.header("CSeq"))
        if m.received and key not in seen:
            seen.add(key)
            dialogs.setdefault(call_id, []).append(m.first_line.split(" ")[0])
    return list(dialogs.values())


SIP_PROCESS = pytest.mark.parametrize("sip_process", [False, True], ids=["in-engine", "own"])


def offered_media(sipp: Sipp, number: str) -> Endpoint:
    """Where our INVITE to ``number`` asked for its media (its SDP's c= and m=audio)."""
    invite = next(
        m
        for m in sipp.messages()
        if m.received and m.first_line.startswith(f"INVITE sip:+91{number}@")
    )
    lines = invite.text.splitlines()
    host = next(line.split()[-1] for line in lines if line.startswith("c="))
    port = next(int(line.split()[1]) for line in lines if line.startswith("m=audio"))
    return Endpoint(host, port)


@SIP_PROCESS
async def test_an_answered_call_relays_and_records_both_parties(
    database_url: str, tmp_path: Path, sip_process: bool
) -> None:
    phones = {Leg.A: Phone(), Leg.B: Phone()}
    # A hangs up once the test has heard both phones' audio, not after a fixed time.
    sipp = answering(tmp_path, phones, a=("bye_when_told",), b=("wait_bye",))
    hooks = Receiver()
    told = Phone()
    try:
        async with sip_api(database_url, tmp_path, sipp, sip_process=sip_process) as api:
            org = await api.make_org(f"sip-answer-{sip_process}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B, webhook_url=hooks.url)
            sid = placed["call_sid"]
            await wait_for(api, org, sid, ("in-progress",))
            heard = {
                leg: asyncio.create_task(phone.receive(PACKETS, within=10))
                for leg, phone in phones.items()
            }
            await asyncio.gather(
                talk(phones[Leg.A], offered_media(sipp, PARTY_A), TONE_HZ["party_a"]),
                talk(phones[Leg.B], offered_media(sipp, PARTY_B), TONE_HZ["party_b"]),
            )
            # Each phone heard every packet of the other, unchanged.
            assert [p[12:] for p in await heard[Leg.B]] == [
                pcmu(tone_frames(440, 0, PACKETS))[i * 160 : (i + 1) * 160] for i in range(PACKETS)
            ]
            assert len(await heard[Leg.A]) == PACKETS
            tell_a_to_hang_up(sipp, told)
            call = await wait_for(api, org, sid)
            assert await sipp.finished() == 0, sipp.errors()
            recording = await api.client.get(f"/v1/masking/calls/{sid}/recording", headers=org.auth)
            url = recording.json()["data"]["url"].removeprefix("http://127.0.0.1:8000")
            mp3 = (await api.client.get(url)).content
            delivered = await until(hooks, lambda got: len(got) >= 6)
    finally:
        hooks.close()
        sipp.close()
        for phone in (*phones.values(), told):
            phone.close()

    assert (call["status"], call["hangup_cause"], call["hangup_by"]) == (
        "completed",
        "NORMAL_CLEARING",
        "party_a",
    )
    assert (call["failed_leg"], call["sip_code"], call["recording_status"]) == (None, None, "ready")
    assert (call["bill_duration_sec"], call["price"]) == (60, 1.5)
    # The bridge lasted at least the phones' 2 s of paced audio (A hung up after it).
    assert call["talk_duration_sec"] >= PACKETS * 0.02
    # The webhooks of a real call are those of a sandbox one (SPEC §6).
    assert [r.json["event"] for r in delivered] == LIFECYCLE
    assert delivered[-1].json["data"] == call
    decoded = decode_mp3(mp3)
    middle = int(decoded.rate * 2 * 0.5)  # half a second in: both phones are talking
    assert dominant_hz(decoded.left[middle:], decoded.rate) == 440
    assert dominant_hz(decoded.right[middle:], decoded.rate) == 1000
    seen = sipp.messages()
    invites = [m for m in seen if m.received and m.first_line.startswith("INVITE")]
    assert [m.first_line.split(" ")[1].split("@")[0] for m in invites] == [
        f"sip:+91{PARTY_A}",
        f"sip:+91{PARTY_B}",
    ]
    masked = f"+{placed['masked_number']}"
    for invite in invites:
        assert f"sip:{masked}@" in (invite.header("From") or "")
        assert f"sip:{masked}@" in (invite.header("P-Asserted-Identity") or "")
    # (The OPTIONS is the test's, telling A to hang up.) B's INVITE leaves at A's 200 OK,
    # before or after A's ACK: the two dialogs' orders are their own.
    assert dialogs_seen(sipp) == [["INVITE", "ACK", "OPTIONS", "SIP/2.0"], ["INVITE", "ACK", "BYE"]]


def tell_a_to_hang_up(sipp: Sipp, told: Phone) -> None:
    """Send SIPp an OPTIONS in party A's dialog (the ``bye_when_told`` fragment): A then
    sends its BYE. (SIPp answers it to the call's peer, maskline, which drops the stray
    200: the call ending is the test's sign that it arrived.)"""
    seen = sipp.messages()
    invite = next(
        m for m in seen if m.received and m.first_line.startswith(f"INVITE sip:+91{PARTY_A}@")
    )
    call_id = invite.header("Call-ID")
    answer = next(
        m
        for m in seen
        if not m.received
        and m.first_line.startswith("SIP/2.0 200")
        and m.header("Call-ID") == call_id
    )
    lines = [
        f"OPTIONS sip:{sipp.trunk} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{told.port};branch=z9hG4bK-test-hang-up",
        f"From: {invite.header('From')}",
        f"To: {answer.header('To')}",
        f"Call-ID: {call_id}",
        "CSeq: 900 OPTIONS",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    host, port = sipp.trunk.split(":")
    told.send(("\r\n".join(lines) + "\r\n\r\n").encode(), Endpoint(host, int(port)))


def outcome(call: dict[str, Any]) -> tuple[object, ...]:
    return (
        call["status"],
        call["hangup_cause"],
        call["hangup_by"],
        call["failed_leg"],
        call["sip_code"],
        call["bill_duration_sec"],
        call["price"],
    )


async def one_call(
    database_url: str, tmp_path: Path, sipp: Sipp, *, clock: Clock | None = None, **body: Any
) -> dict[str, Any]:
    """Place a call through SIPp and return it once ended; SIPp must pass its scenario."""
    overrides = body.pop("settings", {})
    try:
        async with sip_api(database_url, tmp_path, sipp, clock=clock, **overrides) as api:
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B, **body)
            call = await wait_for(api, org, placed["call_sid"], within=30)
            assert await sipp.finished() == 0, sipp.errors()
            return call
    finally:
        sipp.close()


@pytest.mark.parametrize(
    ("code", "cause", "by"),
    [
        (486, "USER_BUSY", "party_a"),
        (404, "UNALLOCATED_NUMBER", "system"),
        (603, "CALL_REJECTED", "party_a"),
        (503, "NORMAL_TEMPORARY_FAILURE", "system"),
    ],
)
async def test_a_refusing_first_leg_fails_the_call_unbilled(
    database_url: str, tmp_path: Path, code: int, cause: str, by: str
) -> None:
    sipp = Sipp("reject.xml", tmp_path / "sipp", calls=1, fill={"CODE": str(code)})
    call = await one_call(database_url, tmp_path, sipp)
    assert outcome(call) == ("failed", cause, by, "party_a", code, 0, 0)
    assert requests_seen(sipp) == ["INVITE", "ACK"]


@pytest.mark.parametrize("code", [408, 480])
async def test_a_timeout_or_unavailable_answer_from_the_far_end_is_no_answer(
    database_url: str, tmp_path: Path, code: int
) -> None:
    # The trunk did respond (100 Trying), then gave up on the phone: not a trunk failure.
    sipp = Sipp("reject.xml", tmp_path / "sipp", calls=1, fill={"CODE": str(code)})
    call = await one_call(database_url, tmp_path, sipp)
    assert outcome(call) == ("no-answer", "NO_ANSWER", "system", "party_a", code, 0, 0)


@SIP_PROCESS
async def test_b_busy_after_a_answered_fails_on_party_b_and_a_hears_ringback_then_busy(
    database_url: str, tmp_path: Path, sip_process: bool
) -> None:
    phone_a = Phone()
    sipp = Sipp(
        "b_rejects.xml",
        tmp_path / "sipp",
        calls=2,
        variables={"aport": str(phone_a.port)},
        fill={"CODE": "486"},
    )
    try:
        # Until A has heard nothing for 3 s: our BYE ends the tone. (Quiet for 1 s ended
        # it after 4 packets once, when the suites of both databases loaded the machine.)
        heard = asyncio.create_task(phone_a.collect(quiet=3.0, within=20))
        call = await one_call(database_url, tmp_path, sipp, settings={"sip_process": sip_process})
        packets = await heard
    finally:
        phone_a.close()
    assert outcome(call) == ("failed", "USER_BUSY", "party_b", "party_b", 486, 0, 0)
    assert dialogs_seen(sipp) == [["INVITE", "ACK", "BYE"], ["INVITE", "ACK"]]
    # While B rang (600 ms) A heard 400 Hz ringback, then 1.5 s of busy tone before our BYE.
    assert {p[1] & 0x7F for p in packets} == {0}
    assert len(packets) >= 75
    audio = to_pcm16(G711.PCMU, b"".join(p[12:] for p in packets))
    assert dominant_hz(audio) == 400


async def test_a_leg_sent_at_the_answer_but_not_asked_for_is_cancelled_at_once(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # B's INVITE leaves the moment A's 200 OK arrives (``Dial.then``), before the engine
    # has heard of the answer. An engine that no longer drives the call (it ended it, or
    # let it go) does not ask for B as it takes the answer in: the carrier cancels B, and
    # the engine hears nothing of it. Here the engine is the test, and never asks for B.
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=(), b_before_answer=("cancelled",))
    heard: list[LegEvent] = []
    async with carrier_alone(database_url, tmp_path, sipp, heard) as carrier:
        dial_a_then_b(carrier)
        await eventually(lambda: any(isinstance(e, LegAnswered) for e in heard), within=10)
        carrier.hangup("CAtest", Leg.A, cause=Cause.NORMAL_CLEARING, at=SystemClock().now())
        assert await sipp.finished() == 0, sipp.errors()
    # (A's 180 may reach the loop before the INVITE's own hand-back: either order.)
    assert {type(e) for e in heard[:2]} == {LegDialled, LegRinging}
    assert [(type(e), e.leg) for e in heard[2:]] == [(LegAnswered, Leg.A)]
    assert {e.leg for e in heard} == {Leg.A}
    answered = heard[-1]
    assert isinstance(answered, LegAnswered)
    assert dialogs_seen(sipp) == [["INVITE", "ACK", "BYE"], ["INVITE", "CANCEL", "ACK"]]
    messages = sipp.messages()
    invites = [m for m in messages if m.received and m.first_line.startswith("INVITE")]
    assert invites[1].first_line.startswith(f"INVITE sip:+91{PARTY_B}@")
    # The connect the SIP stack timed (A's 200 OK taken in → B's INVITE handed to the
    # socket) is within the one on the wire (SIPp's clock: its 200 OK sent → B's INVITE
    # received), but for its end: stamped once the send has returned, which may be after
    # the INVITE has left. (Read against another clock, it was 0.25 s off.)
    ok = next(m for m in messages if not m.received and m.first_line.startswith("SIP/2.0 200"))
    assert answered.next_sent_sec is not None
    assert 0 < answered.next_sent_sec <= invites[1].at - ok.at + 0.1


async def test_a_leg_sent_at_an_answer_that_crossed_our_hang_up_is_cancelled_unheard(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # The engine hangs A up (a ring timeout, a hang-up request) while A's 200 OK is on
    # its way: B has gone out as the answer was read. When the answer reaches the carrier,
    # the call is gone (A was its only leg, now ended), so B is cancelled at once; the
    # engine hears neither the answer nor B.
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=(), b_before_answer=("cancelled",))
    heard: list[LegEvent] = []
    async with carrier_alone(database_url, tmp_path, sipp, heard) as carrier:
        taken_in = carrier._on_uac_event
        sent_at_the_answer: list[bool] = []

        def hang_up_first(sid: str, leg: Leg, event: UacEvent) -> None:
            if leg is Leg.A and event.kind == "connect":
                # The answer reaches the carrier after the engine's hang-up of A.
                sent_at_the_answer.append(event.then is not None)
                carrier.hangup("CAtest", Leg.A, cause=Cause.NO_ANSWER, at=SystemClock().now())
            taken_in(sid, leg, event)

        carrier._on_uac_event = hang_up_first  # type: ignore[method-assign]
        dial_a_then_b(carrier)
        assert await sipp.finished() == 0, sipp.errors()
    assert sent_at_the_answer == [True]
    assert len(heard) == 2
    assert {type(e) for e in heard} == {LegDialled, LegRinging}
    assert {e.leg for e in heard} == {Leg.A}
    assert dialogs_seen(sipp) == [["INVITE", "ACK", "BYE"], ["INVITE", "CANCEL", "ACK"]]


async def no_pool_number(_number: str) -> bool:
    return False


def dial_a_then_b(carrier: Carrier) -> None:
    """Dial A with B's dial to follow its answer (``Dial.then``), as the engine does."""
    now = SystemClock().now()
    b = Dial("CAtest", Leg.B, PARTY_B, "918073000001", now)
    carrier.dial(Dial("CAtest", Leg.A, PARTY_A, "918073000001", now, then=b))


@asynccontextmanager
async def carrier_alone(
    database_url: str, tmp_path: Path, sipp: Sipp | None, heard: list[LegEvent]
) -> AsyncIterator[SipCarrier]:
    """A sip carrier with SIPp as its trunk and the test as its engine: ``heard`` gets
    every leg event, and nothing is dialled but what the test dials."""
    carrier = SipCarrier(
        sip_settings(database_url, tmp_path, sipp), SystemClock(), is_pool_number=no_pool_number
    )
    await carrier.start(heard.append)
    try:
        yield carrier
    finally:
        await carrier.close()
        if sipp is not None:
            sipp.close()


async def test_hang_ups_for_calls_the_carrier_no_longer_has_leave_nothing_behind(
    database_url: str, tmp_path: Path
) -> None:
    # An engine letting go of calls (a lost lease) hangs up both legs of each, however
    # long ago they ended here: nothing may be kept for them (it was kept forever).
    heard: list[LegEvent] = []
    async with carrier_alone(database_url, tmp_path, None, heard) as carrier:
        now = SystemClock().now()
        for n in range(1000):
            for leg in (Leg.A, Leg.B):
                carrier.hangup(f"CAgone{n}", leg, cause=Cause.SYSTEM_SHUTDOWN, at=now)
        assert carrier._hung_up_early == set()  # what a leak would hold
    assert heard == []


async def test_an_unanswered_leg_is_cancelled_at_the_ring_timeout(
    database_url: str, tmp_path: Path
) -> None:
    sipp = Sipp("no_answer.xml", tmp_path / "sipp", calls=1)
    # The engine's clock runs ten times faster: the 10 s ring timeout is one real second.
    call = await one_call(database_url, tmp_path, sipp, clock=ScaledClock(10), ring_timeout_sec=10)
    assert outcome(call) == ("no-answer", "NO_ANSWER", "system", "party_a", 487, 0, 0)
    assert requests_seen(sipp) == ["INVITE", "CANCEL", "ACK"]


async def test_a_leg_waiting_for_its_dial_slot_still_rings_for_the_whole_ring_timeout(
    database_url: str, tmp_path: Path
) -> None:
    # One new leg a second: the third call's INVITE waits two real seconds for its slot,
    # twice its ring timeout (10 s on a clock ten times faster). Its ring time starts once
    # the INVITE is out, so it too rings, is cancelled, and is a no-answer with 487.
    sipp = Sipp("no_answer.xml", tmp_path / "sipp", calls=3)
    try:
        async with sip_api(
            database_url, tmp_path, sipp, clock=ScaledClock(10), sip_max_cps=1
        ) as api:
            org = await api.make_org("sip-slot", balance="10", numbers=3)
            placed = [
                await place(
                    api, org, party_a=f"98765432{n}1", party_b=f"91234567{n}1", ring_timeout_sec=10
                )
                for n in range(3)
            ]
            calls = [await wait_for(api, org, call["call_sid"], within=30) for call in placed]
            assert await sipp.finished() == 0, sipp.errors()
    finally:
        sipp.close()
    assert [outcome(call) for call in calls] == [
        ("no-answer", "NO_ANSWER", "system", "party_a", 487, 0, 0)
    ] * 3
    assert sorted(requests_seen(sipp)) == ["ACK"] * 3 + ["CANCEL"] * 3 + ["INVITE"] * 3


async def test_a_digest_challenge_is_answered_with_the_trunk_credentials(
    database_url: str, tmp_path: Path
) -> None:
    sipp = Sipp("challenge.xml", tmp_path / "sipp", calls=1)
    credentials = {"sip_username": "trunkuser", "sip_password": "s3cret"}
    call = await one_call(database_url, tmp_path, sipp, settings=credentials)
    # The trunk answers only a correctly authenticated INVITE with 486 (else 403).
    assert outcome(call) == ("failed", "USER_BUSY", "party_a", "party_a", 486, 0, 0)
    methods = requests_seen(sipp)
    assert sorted(methods) == ["ACK", "ACK", "INVITE", "INVITE"]
    second = [m for m in sipp.messages() if m.received and m.first_line.startswith("INVITE")][1]
    assert (second.header("Authorization") or "").startswith("Digest ")


@SIP_PROCESS
async def test_b_hanging_up_ends_the_call_and_a_gets_our_bye(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone], sip_process: bool
) -> None:
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=("send_bye",))
    call = await one_call(database_url, tmp_path, sipp, settings={"sip_process": sip_process})
    assert outcome(call) == ("completed", "NORMAL_CLEARING", "party_b", None, None, 60, 1.5)
    assert dialogs_seen(sipp) == [["INVITE", "ACK", "BYE"], ["INVITE", "ACK", "SIP/2.0"]]


async def test_an_ended_calls_legs_are_freed_once_they_have_lingered(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # A leg's UA lingers to answer a BYE that crossed ours: seconds, not sippy's 32 s (at
    # 100 calls/s, half a million objects that every collection walked). A leg that was
    # sent no request in its dialog (A here: we hang it up) is then freed by its last
    # reference going, with the collector off; one that was (B, whose BYE sippy keeps in
    # a reference cycle with the UA) by the collector, and nothing else holds either.
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=("send_bye",))
    gc.disable()
    try:
        async with sip_api(database_url, tmp_path, sipp) as api:
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            sid = placed["call_sid"]
            calls = carrier_of(api)._calls
            legs: dict[Leg, weakref.ref[Any]] = await eventually_value(
                lambda: (
                    {leg: weakref.ref(u.ua) for leg, u in calls[sid].uacs.items()}
                    if sid in calls
                    else {}
                ),
                lambda legs: len(legs) == 2,
                within=30,
            )
            call = await wait_for(api, org, sid, within=30)
            await eventually(
                lambda: legs[Leg.A]() is None, within=agents.DISCONNECTED_LINGER_SEC + 5
            )
            gc.collect()
            left = [leg() is not None for leg in legs.values()]
            assert await sipp.finished() == 0, sipp.errors()
    finally:
        gc.enable()
        sipp.close()
    assert call["status"] == "completed"
    assert left == [False, False]


@SIP_PROCESS
async def test_a_re_invite_mid_call_is_answered_and_the_call_goes_on(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone], sip_process: bool
) -> None:
    sipp = answering(tmp_path, phones, a=("reinvite", "send_bye"), b=("wait_bye",))
    call = await one_call(database_url, tmp_path, sipp, settings={"sip_process": sip_process})
    assert outcome(call) == ("completed", "NORMAL_CLEARING", "party_a", None, None, 60, 1.5)
    # A re-INVITEs 300 ms after its ACK, which on a loaded machine can come before B has
    # answered: each dialog's order is asserted on its own. To A: our 100 and 200 to the
    # re-INVITE and our 200 to its BYE; to B: our BYE.
    assert dialogs_seen(sipp) == [
        ["INVITE", "ACK", "SIP/2.0", "SIP/2.0", "SIP/2.0"],
        ["INVITE", "ACK", "BYE"],
    ]


async def test_max_duration_ends_the_call_with_our_bye_to_both(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=("wait_bye",))
    # The engine's clock runs ten times faster: the 10 s maximum is one real second.
    call = await one_call(database_url, tmp_path, sipp, clock=ScaledClock(10), max_duration_sec=10)
    assert outcome(call) == ("completed", "ALLOTTED_TIMEOUT", "system", None, None, 60, 1.5)
    assert call["talk_duration_sec"] == 10
    assert sorted(requests_seen(sipp)) == ["ACK", "ACK", "BYE", "BYE", "INVITE", "INVITE"]


async def test_a_silent_leg_is_hung_up_after_the_media_timeout(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # Both phones answer and then send no RTP at all.
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=("wait_bye",))
    call = await one_call(database_url, tmp_path, sipp, settings={"rtp_timeout_sec": 2})
    assert outcome(call) == MEDIA_TIMED_OUT
    assert sorted(requests_seen(sipp)) == ["ACK", "ACK", "BYE", "BYE", "INVITE", "INVITE"]


async def test_new_legs_are_paced_to_the_trunks_call_rate(
    database_url: str, tmp_path: Path
) -> None:
    sipp = Sipp("reject.xml", tmp_path / "sipp", calls=3, fill={"CODE": "486"})
    try:
        async with sip_api(database_url, tmp_path, sipp, sip_max_cps=2) as api:
            org = await api.make_org("sip-paced", balance="10", numbers=3)
            first_placed = time.time()
            placed = [
                await place(api, org, party_a=f"98765432{n}1", party_b=f"91234567{n}1")
                for n in range(3)
            ]
            for call in placed:
                await wait_for(api, org, call["call_sid"])
            assert await sipp.finished() == 0, sipp.errors()
    finally:
        sipp.close()
    invites = [m for m in sipp.messages() if m.received and m.first_line.startswith("INVITE")]
    arrived = sorted(m.at for m in invites)
    # Two new legs a second: the n-th INVITE cannot leave before n/2 s after the first dial.
    assert len(arrived) == 3
    for n, at in enumerate(arrived):
        assert at >= first_placed + n * 0.5


async def test_early_media_from_b_reaches_a_instead_of_ringback(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    sipp = answering(
        tmp_path,
        phones,
        a=("wait_bye",),
        b=("send_bye",),
        b_before_answer=("early_media",),
        pause_ms=500,
    )
    early = b"\x55" * 160
    try:
        async with sip_api(database_url, tmp_path, sipp) as api:
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            # A listens from the start: B's 183 comes half a second after A's answer.
            heard = asyncio.create_task(phones[Leg.A].collect(quiet=1.0, within=15))
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            sid = placed["call_sid"]
            await wait_for(api, org, sid, ("answered",))
            session = relay_of(api).sessions[sid]
            # B's side plays its announcement from the moment B is being dialled.
            for seq in range(60):
                packet = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xE0E0E0E0)
                phones[Leg.B].send(packet + early, session.local(Leg.B))
                await asyncio.sleep(0.02)  # pacing, not a wait: a phone's 20 ms frames
            call = await wait_for(api, org, sid, within=30)
            assert await sipp.finished() == 0, sipp.errors()
            packets = await heard
    finally:
        sipp.close()
    assert outcome(call) == ("completed", "NORMAL_CLEARING", "party_b", None, None, 60, 1.5)
    payloads = [p[12:] for p in packets]
    # Ringback first (our tone), then B's early media, and no ringback after it, all
    # on the one stream A hears (ARCHITECTURE §5).
    first_early = payloads.index(early)
    assert first_early > 0
    assert set(payloads[first_early:]) == {early}
    assert payloads.count(early) >= 20
    assert len({struct.unpack_from("!I", p, 8)[0] for p in packets}) == 1


async def test_a_retransmitted_200_is_acked_again(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # -nr: SIPp would otherwise answer our repeated ACK by repeating its 200 forever.
    sipp = answering(
        tmp_path, phones, a=("resend_200", "send_bye"), b=("wait_bye",), options=("-nr",)
    )
    call = await one_call(database_url, tmp_path, sipp)
    assert outcome(call) == ("completed", "NORMAL_CLEARING", "party_a", None, None, 60, 1.5)
    acks = [m for m in sipp.messages() if m.received and m.first_line.startswith("ACK")]
    to_a = [m.text for m in acks if f"+91{PARTY_A}" in (m.header("To") or "")]
    # A's 200 came twice and got the same ACK twice; B's once.
    assert (len(acks), len(to_a), len(set(to_a))) == (3, 2, 1)


async def test_a_taken_sip_port_fails_the_start_and_leaves_nothing_running(
    database_url: str, tmp_path: Path
) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        settings = make_settings(
            database_url,
            tmp_path / "data",
            carrier="sip",
            sip_trunk="127.0.0.1:5999",
            sip_bind=f"127.0.0.1:{taken.getsockname()[1]}",
        )
        with pytest.raises(OSError, match="in use"):
            async with running_api(settings):
                pass
        # The SIP stack has let go of the loop and left no thread of sippy's (a sender),
        # the workers started before the engine are all stopped, and no socket of the
        # failed bind is left for the garbage collector.
        assert SipLoop.running is None
        assert [t for t in threading.enumerate() if type(t).__name__ == "AsyncSender"] == []
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
        assert [str(w.message) for w in caught] == []
    finally:
        taken.close()


def rtp(ssrc: int, seq: int) -> bytes:
    """One 20 ms PCMU packet from ``ssrc``, whose payload repeats the SSRC's low byte
    (the relay rewrites the header onto the hearing leg's own stream, not the payload)."""
    header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, ssrc)
    return header + bytes([ssrc & 0xFF]) * 160


def sent_by(packet: bytes) -> int | None:
    """The low byte of the SSRC ``rtp`` sent ``packet`` from; None for our own tones."""
    payload = packet[12:]
    return payload[0] if payload == bytes(payload[:1]) * 160 else None


def ssrc_of(packet: bytes) -> int:
    ssrc: int = struct.unpack_from("!I", packet, 8)[0]
    return ssrc


async def stream(phone: Phone, to: Endpoint, ssrc: int, stop: asyncio.Event) -> None:
    """RTP from ``phone`` every 20 ms until ``stop`` is set."""
    seq = 0
    while not stop.is_set():
        phone.send(rtp(ssrc, seq), to)
        seq += 1
        await asyncio.sleep(0.02)  # pacing, not a wait: a phone's 20 ms frames


async def heard_from(phone: Phone, ssrc: int, within: float = 10.0) -> None:
    """Return once ``phone`` receives a packet from ``ssrc`` (fail after ``within`` s)."""
    async with asyncio.timeout(within):
        while sent_by((await phone.receive(1, within=within))[0]) != ssrc & 0xFF:
            pass


async def test_a_mid_call_update_moving_the_media_is_answered_and_the_relay_follows(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # A answers with media at its first port, talks from there (so the relay latches to
    # it), then sends an UPDATE whose offer names a new port, and talks only from that.
    moved = Phone()
    sipp = answering(
        tmp_path,
        phones,
        a=("update", "send_bye"),
        b=("wait_bye",),
        pause_ms=6000,
        variables={"moved_aport": str(moved.port)},
    )
    old_ssrc, new_ssrc, b_ssrc = 0xA0A0A0A0, 0xA1A1A1A1, 0xB2B2B2B2
    stop = asyncio.Event()
    b_talking: asyncio.Task[None] | None = None
    try:
        async with sip_api(database_url, tmp_path, sipp) as api:
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            sid = placed["call_sid"]
            await wait_for(api, org, sid, ("in-progress",))
            session = relay_of(api).sessions[sid]
            a_local = session.local(Leg.A)
            b_talking = asyncio.create_task(
                stream(phones[Leg.B], session.local(Leg.B), b_ssrc, stop)
            )
            # Before the UPDATE (2 s after A answered): both ways through A's first port.
            for seq in range(5):
                phones[Leg.A].send(rtp(old_ssrc, seq), a_local)
            before = await phones[Leg.B].receive(5)
            await heard_from(phones[Leg.A], b_ssrc)  # after the ringback it had before
            # After it, B's media is sent to A's new port...
            heard_at_new = await moved.receive(5, within=10)
            # ...and only the new port's packets are relayed to B, although the old port
            # goes on sending (as a phone's last packets from there would still arrive).
            for seq in range(5, 5 + PACKETS):
                phones[Leg.A].send(rtp(old_ssrc, seq), a_local)
                moved.send(rtp(new_ssrc, seq), a_local)
                await asyncio.sleep(0.02)  # pacing, not a wait: a phone's 20 ms frames
            after = await phones[Leg.B].receive(PACKETS)
            stop.set()
            await b_talking
            call = await wait_for(api, org, sid, within=30)
            assert await sipp.finished() == 0, sipp.errors()
    finally:
        stop.set()
        if b_talking is not None:
            await asyncio.gather(b_talking, return_exceptions=True)
        sipp.close()
        moved.close()
    assert [sent_by(p) for p in before] == [old_ssrc & 0xFF] * 5
    assert {sent_by(p) for p in heard_at_new} == {b_ssrc & 0xFF}
    assert [sent_by(p) for p in after] == [new_ssrc & 0xFF] * PACKETS
    # The new port's stream is a new source: B hears it on with the next numbers.
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in before + after]
    assert [(b - a) & 0xFFFF for a, b in itertools.pairwise(seqs)] == [1] * (4 + PACKETS)
    assert len({ssrc_of(p) for p in before + after}) == 1
    assert outcome(call) == ("completed", "NORMAL_CLEARING", "party_a", None, None, 60, 1.5)
    update = [m for m in sipp.messages() if not m.received and m.first_line.startswith("UPDATE")]
    answer = next(m for m in sipp.messages() if m.received and "UPDATE" in (m.header("CSeq") or ""))
    assert len(update) == 1
    assert f"m=audio {moved.port} RTP/AVP 0" in update[0].text
    assert answer.first_line == "SIP/2.0 200 OK"
    assert (answer.header("Content-Type") or "").lower() == "application/sdp"
    # Our answer is unchanged: A keeps sending to the same relay port.
    assert f"m=audio {a_local.port} RTP/AVP 0" in answer.text
    # Our 200 to the UPDATE, our 200 to A's BYE, then our BYE to B.
    assert dialogs_seen(sipp) == [["INVITE", "ACK", "SIP/2.0", "SIP/2.0"], ["INVITE", "ACK", "BYE"]]


async def test_the_balance_cut_off_ends_the_call_with_our_bye_to_both(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # Exactly one minute's price (SPEC §4's minimum): one 60 s pulse is granted at the
    # bridge, no second one can be, so the call ends when that minute runs out. The
    # engine's clock runs ten times faster, so that minute takes six seconds; SIPp's
    # transactions keep their own real time.
    sipp_limit = 60
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=("wait_bye",), timeout_sec=sipp_limit)
    try:
        # The phones stay silent: the media timeout must not end the call first.
        async with sip_api(
            database_url, tmp_path, sipp, clock=ScaledClock(10), rtp_timeout_sec=3000
        ) as api:
            org = await api.make_org(f"sip-{tmp_path.name}", balance="1.5", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            call = await wait_for(api, org, placed["call_sid"], within=sipp_limit)
            assert await sipp.finished() == 0, sipp.errors()
            wallet = await billing(api, org)
    finally:
        sipp.close()
    assert outcome(call) == ("completed", "BALANCE_EXHAUSTED", "system", None, None, 60, 1.5)
    assert call["talk_duration_sec"] == 60
    # The minute was paid from the wallet, which holds nothing back and is not negative.
    assert (wallet["balance"], wallet["reserved"], wallet["available"]) == (0, 0, 0)
    assert sorted(requests_seen(sipp)) == ["ACK", "ACK", "BYE", "BYE", "INVITE", "INVITE"]


async def test_the_advertised_address_is_in_contact_via_and_sdp_and_the_trunk_reaches_us_there(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # SPEC §10: MASKLINE_SIP_ADVERTISE (a public address behind NAT) is written in Contact,
    # Via and SDP. Here the engine listens on every local address and advertises
    # 127.0.0.2, where the trunk's in-dialog requests, routed by our Contact, reach it.
    advertised, sip_port = "127.0.0.2", free_udp_port("0.0.0.0")  # noqa: S104
    sipp = answering(tmp_path, phones, a=("bye_by_contact",), b=("wait_bye",))
    settings = {"sip_bind": f"0.0.0.0:{sip_port}", "sip_advertise": advertised}
    try:
        async with sip_api(database_url, tmp_path, sipp, **settings) as api:
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            call = await wait_for(api, org, placed["call_sid"], within=30)
            assert await sipp.finished() == 0, sipp.errors()
    finally:
        sipp.close()
    # A's BYE went to our Contact's address and ended the call as A's hang-up.
    assert outcome(call) == ("completed", "NORMAL_CLEARING", "party_a", None, None, 60, 1.5)
    ours = f"{advertised}:{sip_port}"
    requests = [m for m in sipp.messages() if m.received and not m.first_line.startswith("SIP/")]
    assert dialogs_seen(sipp) == [["INVITE", "ACK", "SIP/2.0"], ["INVITE", "ACK", "BYE"]]
    for request in requests:
        assert (request.header("Via") or "").startswith(f"SIP/2.0/UDP {ours};")
    masked = f"+{placed['masked_number']}"
    for request in requests:
        if request.first_line.startswith(("INVITE", "BYE")):
            # No display name: sippy's default ("Anonymous") is not sent.
            assert request.header("Contact") == f"<sip:{masked}@{ours}>"
    invites = [r for r in requests if r.first_line.startswith("INVITE")]
    assert len(invites) == 2
    for invite in invites:
        assert f"o=maskline 1 1 IN IP4 {advertised}" in invite.text
        assert f"c=IN IP4 {advertised}" in invite.text


async def test_a_trunk_that_never_responds_fails_the_call_as_a_trunk_failure(
    database_url: str, tmp_path: Path
) -> None:
    # SPEC §3: no response at all from the trunk on A is a trunk failure, not a party who
    # does not pick up. The trunk here takes our INVITEs and never sends anything back.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.setblocking(False)
    trunk = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        # The engine's clock runs ten times faster: the 30 s ring timeout is 3 real seconds.
        async with sip_api(
            database_url, tmp_path, None, clock=ScaledClock(10), sip_trunk=trunk
        ) as api:
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B, ring_timeout_sec=30)
            call = await wait_for(api, org, placed["call_sid"], within=30)
        invite = silent.recv(65535)
    finally:
        silent.close()
    assert invite.startswith(f"INVITE sip:+91{PARTY_A}@".encode())
    assert outcome(call) == ("failed", "NORMAL_TEMPORARY_FAILURE", "system", "party_a", 408, 0, 0)
    assert (call["answered_at"], call["duration_sec"]) == (None, 0)


def stranger_request(
    method: str, dialog: Dialog, *, via: tuple[str, int], media_port: int
) -> bytes:
    """An in-dialog request in ``dialog`` as the trunk's side would send it (its From is
    our To), with an offer that moves the media to ``media_port`` on the sender's host."""
    host, port = via
    body = (
        f"v=0\r\no=x 1 2 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    lines = [
        f"{method} {dialog.local.split('<', 1)[-1].split('>', 1)[0]} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-stranger-{method}",
        f"From: {dialog.remote}",
        f"To: {dialog.local}",
        f"Call-ID: {dialog.call_id}",
        f"CSeq: 900 {method}",
        f"Contact: <sip:{host}:{port}>",
        "Max-Forwards: 70",
        "Content-Type: application/sdp",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@pytest.mark.parametrize("method", ["UPDATE", "INVITE"])
async def test_an_in_dialog_request_from_anywhere_but_the_trunk_is_dropped(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone], method: str
) -> None:
    # Someone who knows A's dialog (Call-ID and tags) sends, from another address than the
    # trunk's, a re-INVITE or UPDATE moving A's media to itself: it gets no answer, and
    # B's audio goes on reaching A's phone.
    sipp = answering(tmp_path, phones, a=("wait_bye",), b=("wait_bye",))
    sip_port = free_udp_port()
    stranger, stranger_media = Phone("127.0.0.2"), Phone("127.0.0.2")
    trunk_side = Phone("127.0.0.1")  # the trunk's address: its OPTIONS gets an answer
    stop = asyncio.Event()
    b_talking: asyncio.Task[None] | None = None
    b_ssrc = 0xB3B3B3B3
    try:
        async with sip_api(database_url, tmp_path, sipp, sip_port=sip_port) as api:
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            sid = placed["call_sid"]
            await wait_for(api, org, sid, ("in-progress",))
            async with api.runtime.db.read() as session:
                stored = (await load_call(session, sid)).sip_dialogs
            assert stored is not None
            dialog = Dialog.from_json(stored["party_a"])
            ours = Endpoint("127.0.0.1", sip_port)
            stranger.send(
                stranger_request(
                    method, dialog, via=("127.0.0.2", stranger.port), media_port=stranger_media.port
                ),
                ours,
            )
            # Our SIP stack handles requests in order: once the trunk's OPTIONS, sent
            # after it, is answered, the stranger's request has been dealt with.
            trunk_side.send(options_from(trunk_side.port, to=sip_port), ours)
            answered = (await trunk_side.receive(1))[0]
            session_media = relay_of(api).sessions[sid]
            b_talking = asyncio.create_task(
                stream(phones[Leg.B], session_media.local(Leg.B), b_ssrc, stop)
            )
            await heard_from(phones[Leg.A], b_ssrc)
            stop.set()
            await b_talking
            hung_up = await api.client.post(f"/v1/masking/calls/{sid}/hangup", headers=org.auth)
            assert hung_up.status_code == 200, hung_up.text
            assert await sipp.finished() == 0, sipp.errors()
        unanswered = waiting(stranger) is None
    finally:
        stop.set()
        if b_talking is not None:
            await asyncio.gather(b_talking, return_exceptions=True)
        sipp.close()
        for phone in (stranger, stranger_media, trunk_side):
            phone.close()
    assert answered.startswith(b"SIP/2.0 200 ")
    assert unanswered
    # The trunk saw nothing of it: its own dialog went on and ended with our BYEs.
    assert sorted(requests_seen(sipp)) == ["ACK", "ACK", "BYE", "BYE", "INVITE", "INVITE"]


def waiting(phone: Phone) -> bytes | None:
    """A datagram already received by ``phone``, if any (without waiting)."""
    try:
        return phone.sock.recv(65535)
    except BlockingIOError:
        return None


def options_from(port: int, *, to: int) -> bytes:
    lines = [
        f"OPTIONS sip:127.0.0.1:{to} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-options-{port}",
        f"From: <sip:trunk@127.0.0.1:{port}>;tag=options",
        f"To: <sip:127.0.0.1:{to}>",
        f"Call-ID: options-{port}@127.0.0.1",
        "CSeq: 1 OPTIONS",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_bridge_in_which_no_phone_sent_audio_is_recorded_as_silence_as_long_as_it(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # SPEC §5: both phones answer and send no RTP at all (muted, or a silent trunk); A
    # hangs up 3 s later. The recording is ready, and it is the bridge's length of silence.
    sipp = answering(tmp_path, phones, a=("send_bye",), b=("wait_bye",), pause_ms=3000)
    try:
        async with sip_api(database_url, tmp_path, sipp) as api:
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            sid = placed["call_sid"]
            call = await wait_for(api, org, sid, within=30)
            assert await sipp.finished() == 0, sipp.errors()
            recording = await api.client.get(f"/v1/masking/calls/{sid}/recording", headers=org.auth)
            assert recording.status_code == 200, recording.text
            url = recording.json()["data"]["url"].removeprefix("http://127.0.0.1:8000")
            mp3 = (await api.client.get(url)).content
    finally:
        sipp.close()
    assert outcome(call) == ("completed", "NORMAL_CLEARING", "party_a", None, None, 60, 1.5)
    assert call["recording_status"] == "ready"
    talk = call["talk_duration_sec"]
    assert recording.json()["data"]["duration_sec"] == talk
    decoded = decode_mp3(mp3)
    assert talk <= decoded.seconds < talk + 1
    assert loudest(decoded.left) == loudest(decoded.right) == 0


def loudest(pcm: bytes) -> int:
    """The largest magnitude of a 16-bit PCM sample in ``pcm``."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    return max((abs(s) for s in samples), default=0)


async def test_audio_that_starts_late_in_the_bridge_is_recorded_where_it_was_spoken(
    database_url: str, tmp_path: Path, phones: dict[Leg, Phone]
) -> None:
    # SPEC §5: the recording runs from the bridge; the time before a leg's first packet
    # is silence. A says nothing for two seconds of the bridge, then 2 s of tone; B is
    # silent throughout.
    sipp = answering(tmp_path, phones, a=("send_bye",), b=("wait_bye",), pause_ms=6000)
    try:
        async with sip_api(database_url, tmp_path, sipp) as api:
            org = await api.make_org(f"sip-{tmp_path.name}", balance="10", numbers=1)
            placed = await place(api, org, party_a=PARTY_A, party_b=PARTY_B)
            sid = placed["call_sid"]
            await wait_for(api, org, sid, ("in-progress",))
            session = relay_of(api).sessions[sid]
            await asyncio.sleep(2)  # not a wait for something: two seconds of A's silence
            await talk(phones[Leg.A], session.local(Leg.A), TONE_HZ["party_a"])
            call = await wait_for(api, org, sid, within=30)
            assert await sipp.finished() == 0, sipp.errors()
            recording = await api.client.get(f"/v1/masking/calls/{sid}/recording", headers=org.auth)
            url = recording.json()["data"]["url"].removeprefix("http://127.0.0.1:8000")
            mp3 = (await api.client.get(url)).content
    finally:
        sipp.close()
    assert (call["status"], call["recording_status"]) == ("completed", "ready")
    decoded = decode_mp3(mp3)
    second = decoded.rate * 2  # bytes of one second of one channel
    # The first two seconds (less the encoder's frame of look-ahead) are silence; A's
    # tone comes after them.
    assert loudest(decoded.left[: int(second * 1.9)]) == 0
    assert loudest(decoded.left[2 * second :]) > 1000
    assert loudest(decoded.right) == 0
