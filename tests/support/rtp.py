"""Fake phones for the media tests: RTP over loopback UDP, and a recorder that keeps audio."""

from __future__ import annotations

import asyncio
import socket

import av

from maskline.telephony.events import Leg
from maskline.telephony.media.relay import Endpoint


class Capture:
    def __init__(self) -> None:
        self.audio: dict[Leg, bytearray] = {Leg.A: bytearray(), Leg.B: bytearray()}
        self.closed = False

    def on_audio(self, leg: Leg, pcm: bytes) -> None:
        self.audio[leg] += pcm

    def close(self) -> None:
        self.closed = True


class Phone:
    """A UDP socket on 127.0.0.1 that sends and receives RTP."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def send(self, data: bytes, to: Endpoint) -> None:
        self.sock.sendto(data, (to.host, to.port))

    async def receive(self, count: int, within: float = 5.0) -> list[bytes]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        async with asyncio.timeout(within):
            while len(got) < count:
                data, _ = await loop.sock_recvfrom(self.sock, 2048)
                got.append(data)
        return got

    async def collect(self, *, quiet: float, within: float = 10.0) -> list[bytes]:
        """Every packet until none has come for ``quiet`` seconds."""
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        deadline = loop.time() + within
        while loop.time() < deadline:
            try:
                async with asyncio.timeout(quiet):
                    data, _ = await loop.sock_recvfrom(self.sock, 2048)
            except TimeoutError:
                if got:
                    break
                continue
            got.append(data)
        return got

    async def nothing_within(self, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(seconds):
                await loop.sock_recvfrom(self.sock, 2048)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


def pcmu(pcm: bytes) -> bytes:
    """16-bit PCM → G.711 µ-law, with FFmpeg's encoder."""
    context = av.CodecContext.create("pcm_mulaw", "w")
    assert isinstance(context, av.AudioCodecContext)
    context.sample_rate, context.layout, context.format = 8000, "mono", "s16"
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
    frame.sample_rate = 8000
    frame.planes[0].update(pcm)
    return b"".join(bytes(p) for p in context.encode(frame))
