"""SPEC §8: an INVITE for a pool number (a party calling a masked number back) is answered
with a short announcement and ended with our BYE, and counted; other numbers keep 480.
Only the trunk may send them (403 for anyone else), at most MAX_ANNOUNCEMENTS play at once
(then 503 with Retry-After), and closing leaves no task behind."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from maskline.numbers import service as pool
from maskline.telephony.media.g711 import G711, to_pcm16
from maskline.telephony.media.relay import UdpRelay
from maskline.telephony.media.tones import SIT_HZ
from maskline.telephony.sip import inbound
from maskline.telephony.sip.inbound import PoolLine
from maskline.telephony.sip.stack import UacEvent
from tests.support.api import Api
from tests.support.audio import frames_with
from tests.support.rtp import Phone
from tests.support.sipp import Sipp, free_udp_port
from tests.telephony.sip.test_sip_calls import carrier_of, relay_of, requests_seen, sip_api


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
                # The end is 5 s without a packet: on a loaded machine the stream may pause
                # for a second or two (the loop busy) and then catch up.
                packets = await phone.collect(quiet=5.0, within=30)
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
    # The special information tone, rising 950 → 1400 → 1800 Hz, then again after a pause:
    # the tone each 20 ms packet carries, in runs. Where the first run starts is not the
    # point (a loaded machine may deliver the first packets late), its order is.
    tones = [frames_with(audio, hz) for hz in SIT_HZ]
    labels = [
        next((hz for hz, on in zip(SIT_HZ, frame, strict=True) if on), 0)
        for frame in zip(*tones, strict=True)
    ]
    runs = [(hz, len(list(run))) for hz, run in itertools.groupby(labels) if hz]
    assert [hz for hz, _ in runs[:6]] == [*SIT_HZ, *SIT_HZ]
    # Each segment is 330 ms: 16 or 17 packets, give or take one split by the switch.
    assert all(15 <= length <= 17 for _, length in runs[:5]), runs
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
            fill={"CODE": "480"},
        )
        try:
            assert await sipp.finished() == 0, sipp.errors()
        finally:
            sipp.close()
        counted = carrier_of(api).inbound_calls
    assert counted == 0
    assert [m.first_line for m in sipp.messages() if m.received][-1].startswith("SIP/2.0 480")


async def test_an_invite_from_anywhere_but_the_trunk_is_refused_403_and_not_counted(
    database_url: str, tmp_path: Path
) -> None:
    sip_port = free_udp_port()
    masked = "918074000002"
    # The trunk is 127.0.0.1; this caller sends from 127.0.0.2, to a real pool number.
    async with sip_api(database_url, tmp_path, None, sip_port=sip_port) as api:
        await _add_pool_number(api, masked)
        sipp = Sipp(
            "inbound_refused.xml",
            tmp_path / "sipp",
            calls=1,
            variables={"number": f"+{masked}", "aport": "9"},
            options=(f"127.0.0.1:{sip_port}",),
            fill={"CODE": "403"},
            host="127.0.0.2",
        )
        try:
            assert await sipp.finished() == 0, sipp.errors()
        finally:
            sipp.close()
        counted = carrier_of(api).inbound_calls
    assert counted == 0
    # Refused at once, before any user agent (which would send 100 Trying) or RTP port.
    # (On a loaded machine SIPp may send the INVITE again before our 403 reaches it; each
    # copy gets the same 403.)
    assert {m.first_line for m in sipp.messages() if m.received} == {"SIP/2.0 403 Forbidden"}


class Caller:
    """A party behind the trunk calling a number back, in raw SIP from 127.0.0.1."""

    def __init__(self, sip_port: int) -> None:
        self.sip_port = sip_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.calls = 0

    def _send(self, lines: list[str], body: str = "") -> None:
        extra = ["Content-Type: application/sdp"] if body else []
        text = "\r\n".join([*lines, *extra, f"Content-Length: {len(body)}", "", body])
        self.sock.sendto(text.encode(), ("127.0.0.1", self.sip_port))

    async def _final(self, cseq: str) -> list[str]:
        """The next final response for ``cseq`` (provisional ones are skipped)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(10):
            while True:
                data, _ = await loop.sock_recvfrom(self.sock, 65535)
                lines = data.decode().split("\r\n")
                if not lines[0].startswith("SIP/2.0 ") or int(lines[0].split(" ")[1]) < 200:
                    continue
                if any(line.lower() == f"cseq: {cseq}".lower() for line in lines):
                    return lines

    async def invite(self, number: str) -> tuple[list[str], Callable[[str], list[str]]]:
        """INVITE ``number`` offering PCMU (media at a discard port); the final response,
        and a function making this dialog's in-dialog request lines for a method."""
        self.calls += 1
        call_id = f"back-{self.calls}-{self.port}@127.0.0.1"
        tag = f"caller{self.calls}"
        ruri = f"sip:{number}@127.0.0.1:{self.sip_port}"

        def request(method: str, to: str, cseq: int) -> list[str]:
            return [
                f"{method} {ruri} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-{call_id}-{method}",
                f"From: <sip:+919876543210@127.0.0.1:{self.port}>;tag={tag}",
                to,
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} {method}",
                f"Contact: <sip:+919876543210@127.0.0.1:{self.port}>",
                "Max-Forwards: 70",
            ]

        offer = "\r\n".join(
            ["v=0", "o=c 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             "m=audio 9 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", ""]
        )  # fmt: skip
        self._send(request("INVITE", f"To: <{ruri}>", 1), offer)
        final = await self._final("1 INVITE")
        to = next(line for line in final if line.lower().startswith("to:"))
        # ACK (for a refusal as RFC 3261 wants; for a 200, our ACK confirming the dialog).
        self._send(request("ACK", to, 1))

        def in_dialog(method: str) -> list[str]:
            return request(method, to, 2)

        return final, in_dialog

    async def bye(self, in_dialog: Callable[[str], list[str]]) -> list[str]:
        self._send(in_dialog("BYE"))
        return await self._final("2 BYE")

    def close(self) -> None:
        self.sock.close()


def header(lines: list[str], name: str) -> str | None:
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


async def test_beyond_the_cap_a_call_to_a_pool_number_gets_503_with_retry_after_and_counts(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbound, "MAX_ANNOUNCEMENTS", 1)
    sip_port = free_udp_port()
    masked = "918074000003"
    caller = Caller(sip_port)
    try:
        async with sip_api(database_url, tmp_path, None, sip_port=sip_port) as api:
            await _add_pool_number(api, masked)
            first, first_dialog = await caller.invite(f"+{masked}")
            # The first call holds the only announcement slot, with one RTP port pair.
            relay = relay_of(api)
            sessions = [(sid, len(s._legs)) for sid, s in relay.sessions.items()]
            second, _ = await caller.invite(f"+{masked}")
            bye = await caller.bye(first_dialog)
            counted = carrier_of(api).inbound_calls
    finally:
        caller.close()
    assert first[0] == "SIP/2.0 200 OK"
    assert [legs for _, legs in sessions] == [1]
    assert second[0] == "SIP/2.0 503 Service Unavailable"
    assert header(second, "retry-after") == str(inbound.RETRY_AFTER_SEC)
    assert bye[0] == "SIP/2.0 200 OK"
    # Both were calls to a pool number: the refused one counts too.
    assert counted == 2


class FakeSip:
    """Stands in for the SIP stack: records what PoolLine would run there."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def call(self, fn: Callable[..., object], *args: object) -> None:
        self.calls.append((getattr(fn, "__name__", "?"), args))


async def test_closing_refuses_new_calls_and_leaves_no_task_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    never = asyncio.Event()

    async def stuck(_number: str) -> bool:
        await never.wait()  # a pool lookup (its database) that does not answer
        return False

    monkeypatch.setattr(inbound, "CLOSE_WAIT_SEC", 0.2)
    sip = FakeSip()
    relay = UdpRelay(bind_host="127.0.0.1", advertise="127.0.0.1", ports=range(26400, 26409, 2))
    line = PoolLine(
        sip=sip,  # type: ignore[arg-type]
        relay=relay,
        is_pool_number=stuck,
        counted=lambda: None,
    )
    await line.start()
    offer = UacEvent("offer", sdp="v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 9 RTP/AVP 0\r\n")
    line._on_event("in-1", "918074000004", offer)
    others = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert len(others) == 1  # its handler, waiting for the pool numbers
    closing = asyncio.create_task(line.close())
    await asyncio.sleep(0)  # a yield, not a wait: close() starts, and waits for the handler
    assert not closing.done()
    # An INVITE arriving now is refused at once, with no task for it.
    line._on_event("in-2", "918074000004", offer)
    await closing
    await relay.close()
    # The stuck handler was cancelled and awaited: nothing of ours is left running.
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert all(task.done() for task in others)
    assert ("_refuse", ("in-2", 503, "Service Unavailable")) in sip.calls
    assert ("_hangup", ("in-1",)) in sip.calls
