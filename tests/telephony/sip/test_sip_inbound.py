"""SPEC §8: an INVITE for a pool number (a party calling a masked number back) is answered
with a short announcement and ended with our BYE, and counted; other numbers keep 480."""

from __future__ import annotations

import math
import struct
from pathlib import Path

from maskline.numbers import service as pool
from maskline.telephony.media.g711 import G711, to_pcm16
from maskline.telephony.media.tones import SIT_GAP_MS, SIT_HZ, SIT_SEGMENT_MS
from tests.support.api import Api
from tests.support.rtp import Phone
from tests.support.sipp import Sipp, free_udp_port
from tests.telephony.sip.test_sip_calls import carrier_of, requests_seen, sip_api

RATE = 8000


def strongest(pcm: bytes, candidates: tuple[int, ...]) -> int:
    """Which of ``candidates`` is strongest in a stretch of 16-bit PCM (a plain DFT)."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)

    def power(freq: int) -> float:
        step = 2 * math.pi * freq / RATE
        re = sum(s * math.cos(step * n) for n, s in enumerate(samples))
        im = sum(s * math.sin(step * n) for n, s in enumerate(samples))
        return re * re + im * im

    return max(candidates, key=power)


async def _add_pool_number(api: Api, number: str) -> None:
    runtime = api.runtime
    async with runtime.db.write() as session:
        await pool.add_numbers(session, [number], org_id=None, now=runtime.clock.now())


async def test_a_call_to_a_pool_number_hears_the_announcement_then_our_bye(
    database_url: str, tmp_path: Path
) -> None:
    phone = Phone()
    sip_port = free_udp_port()
    masked = "918074000001"
    try:
        async with sip_api(database_url, tmp_path, None, sip_port=sip_port) as api:
            await _add_pool_number(api, masked)
            sipp = Sipp(
                "inbound.xml",
                tmp_path / "sipp",
                calls=1,
                variables={"number": f"+{masked}", "aport": str(phone.port)},
                options=(f"127.0.0.1:{sip_port}",),
            )
            try:
                packets = await phone.collect(quiet=1.0, within=20)
                assert await sipp.finished() == 0, sipp.errors()
            finally:
                sipp.close()
            counted = carrier_of(api).inbound_calls
    finally:
        phone.close()
    assert counted == 1
    # 200 OK (SIPp checked it answers PCMA, the caller's first choice), then our BYE.
    assert requests_seen(sipp) == ["SIP/2.0", "SIP/2.0", "BYE"]
    assert {p[1] & 0x7F for p in packets} == {G711.PCMA.value}
    audio = to_pcm16(G711.PCMA, b"".join(p[12:] for p in packets))
    # The special information tone, rising 950 → 1400 → 1800 Hz, then again after a pause.
    segment = (SIT_SEGMENT_MS + SIT_GAP_MS) * RATE // 1000 * 2
    middle = SIT_SEGMENT_MS * RATE // 1000  # bytes: half a segment of 16-bit samples
    heard = [
        strongest(audio[i * segment + middle // 2 : i * segment + middle // 2 + middle], SIT_HZ)
        for i in range(3)
    ]
    assert heard == list(SIT_HZ)
    assert len(packets) >= 190  # two cycles of about 2 s, in 20 ms packets


async def test_a_call_to_any_other_number_is_refused_with_480_and_not_counted(
    database_url: str, tmp_path: Path
) -> None:
    sip_port = free_udp_port()
    async with sip_api(database_url, tmp_path, None, sip_port=sip_port) as api:
        sipp = Sipp(
            "inbound_refused.xml",
            tmp_path / "sipp",
            calls=1,
            variables={"number": "+918074999999", "aport": "9"},
            options=(f"127.0.0.1:{sip_port}",),
        )
        try:
            assert await sipp.finished() == 0, sipp.errors()
        finally:
            sipp.close()
        counted = carrier_of(api).inbound_calls
    assert counted == 0
    assert [m.first_line for m in sipp.messages() if m.received][-1].startswith("SIP/2.0 480")
