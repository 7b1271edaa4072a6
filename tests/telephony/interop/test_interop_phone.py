"""A real third-party phone behind a real SIP proxy (ARCHITECTURE §5: one continuous
RTP stream per leg). Kamailio is the trunk; each A is a baresip that answers at once
and records what it hears after its jitter buffer; B is SIPp, answering within
milliseconds of its INVITE with its own RTP stream, or busy at once."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

from maskline.telephony.sim.audio import TONE_HZ, tone_frames
from tests.conftest import make_settings
from tests.support.api import running_api
from tests.support.audio import frames_with, longest_run
from tests.support.calls import place, wait_for
from tests.support.databases import KIND
from tests.support.interop import Baresip, Kamailio, Route
from tests.support.rtp import pcmu
from tests.support.sipp import Sipp, free_udp_port

CALLS = 8  # of each kind
TALK_MS = 2500  # B's talk time before its BYE
B_HZ = TONE_HZ["party_b"]  # 1000 Hz, what B says
BUSY_HZ = 400
# 20 ms frames of B's tone: 0.2 s. The fault heard none at all for the whole call; a
# loaded machine may lose some of the first call's early packets (one heard 0.68 s).
HEARD_B_FRAMES = 10
# The busy tone is 750 ms on; ringback is never on longer than 400 ms (20 frames).
BUSY_RUN_FRAMES = 30
# The phones' and SIPp's media ports, apart for each database's session (`make test`
# runs the two side by side, and each runs this test).
PORTS = {"sqlite": ("34000-34499", "35000"), "postgresql": ("34500-34999", "35100")}
PHONE_RTP_PORTS, SIPP_MEDIA_PORT = PORTS[KIND]


def a_number(n: int) -> str:
    return f"98765432{n:02d}"


def b_number(n: int, *, busy: bool) -> str:
    return f"{81234567 if busy else 91234567}{n:02d}"


def write_sources(directory: Path) -> tuple[Path, Path]:
    """What A says (A's tone, a WAV for baresip) and what B says (B's tone, raw PCMU
    for SIPp's rtp_stream), ten and five seconds of them."""
    a_wav = directory / "a.wav"
    with wave.open(str(a_wav), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(tone_frames(TONE_HZ["party_a"], 0, 500))
    b_raw = directory / "b.pcmu"
    b_raw.write_bytes(pcmu(tone_frames(B_HZ, 0, 250)))
    return a_wav, b_raw


async def test_a_real_phone_hears_b_after_a_fast_answer_and_the_busy_tone_after_a_fast_busy(
    database_url: str, tmp_path: Path
) -> None:
    a_wav, b_raw = write_sources(tmp_path)
    sipp = Sipp(
        "interop_b.xml",
        tmp_path / "sipp",
        calls=2 * CALLS,
        fill={"TONE": str(b_raw), "TALK_MS": str(TALK_MS)},
        options=("-mi", "127.0.0.1", "-mp", SIPP_MEDIA_PORT),
    )
    phones: list[Baresip] = []
    kamailio: Kamailio | None = None
    try:
        for n in range(2 * CALLS):
            phone = Baresip(tmp_path / f"a{n}", user="a", source=a_wav, rtp_ports=PHONE_RTP_PORTS)
            phones.append(phone)
        routes = [
            Route(rf"^[+]91{a_number(n)}$", phone.address, "a") for n, phone in enumerate(phones)
        ]
        routes.append(Route(r"^[+]91[89]1234567", sipp.trunk))
        kamailio = Kamailio(tmp_path / "kamailio", routes)
        await asyncio.gather(kamailio.ready(), *(phone.ready() for phone in phones))
        settings = make_settings(
            database_url,
            tmp_path / "data",
            carrier="sip",
            sip_trunk=kamailio.trunk,
            sip_bind=f"127.0.0.1:{free_udp_port()}",
            rtp_ports="22000-22999",
            call_status_rate_limit_per_minute=100_000,
        )
        async with running_api(settings) as api:
            org = await api.make_org(f"interop-{tmp_path.name}", balance="1000", numbers=1)
            placed = await asyncio.gather(
                *(
                    place(api, org, party_a=a_number(n), party_b=b_number(n, busy=n >= CALLS))
                    for n in range(2 * CALLS)
                )
            )
            # SIPp is done once every B has hung up or refused: only then are the calls
            # polled (one at a time), so that no poller loads the loop the relay runs on
            # while the media flows.
            assert await sipp.finished(within=60) == 0, sipp.errors()
            calls = [await wait_for(api, org, call["call_sid"], within=30) for call in placed]
    finally:
        sipp.close()
        if kamailio is not None:
            kamailio.close()
        for phone in phones:
            phone.close()
    assert [(c["status"], c["hangup_cause"]) for c in calls] == [
        ("completed", "NORMAL_CLEARING")
    ] * CALLS + [("failed", "USER_BUSY")] * CALLS
    heard = [phone.heard() for phone in phones]
    b_frames = [sum(frames_with(pcm, B_HZ)) for pcm in heard[:CALLS]]
    # A frame the phone played late or lost on a loaded machine splits a stretch of
    # tone: a gap of one frame is bridged (ringback's 400 ms stretches are 200 ms apart
    # at the least, ten frames).
    busy_runs = [longest_run(frames_with(pcm, BUSY_HZ), bridging=1) for pcm in heard[CALLS:]]
    # Each A heard B (at least 0.2 s of B's 2.5 s), and each A whose B was busy heard
    # the busy tone (a 400 Hz stretch longer than any of ringback's).
    assert [n >= HEARD_B_FRAMES for n in b_frames] == [True] * CALLS, str(b_frames)
    assert [n >= BUSY_RUN_FRAMES for n in busy_runs] == [True] * CALLS, str(busy_runs)
