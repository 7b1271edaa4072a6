"""Third-party SIP software on loopback: Kamailio as the trunk, baresip as a phone.

Both are the Debian 12 packages (``kamailio`` 5.6, ``baresip`` 1.0), started with a
minimal configuration written to the test's directory, each on a free UDP port.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

from tests.support.sipp import free_udp_port
from tests.support.waits import eventually

# Debian installs them under the architecture's triplet (/usr/lib/x86_64-linux-gnu/...).
KAMAILIO_MODULES = next(iter(sorted(Path("/usr/lib").glob("*/kamailio/modules"))), Path())


@dataclass(frozen=True)
class Route:
    """INVITEs whose Request-URI user matches ``user`` (a regular expression) go to
    ``to`` ("host:port"); with ``as_user``, the Request-URI is rewritten to
    ``sip:<as_user>@<to>`` (a phone registered under its own name)."""

    user: str
    to: str
    as_user: str | None = None

    def script(self) -> str:
        target = (
            f'$ru = "sip:{self.as_user}@{self.to}";'
            if self.as_user is not None
            else f'$du = "sip:{self.to}";'
        )
        return f'    if ($rU =~ "{self.user}") {{ {target} t_relay(); exit; }}\n'


_KAMAILIO_CFG = """#!KAMAILIO
debug=1
log_stderror=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("OPTIONS") && $rU == $null) {{ sl_send_reply("200", "OK"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    t_check_trans();
    record_route();
{routes}    sl_send_reply("404", "No Route");
}}
"""


class Kamailio:
    """A stateful, record-routing proxy: the trunk maskline sends its INVITEs to."""

    def __init__(self, workdir: Path, routes: list[Route]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        config = workdir / "kamailio.cfg"
        config.write_text(
            _KAMAILIO_CFG.format(
                port=self.port,
                modules=KAMAILIO_MODULES,
                routes="".join(route.script() for route in routes),
            )
        )
        self.log = workdir / "kamailio.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["kamailio", "-f", str(config), "-DD", "-E", "-m", "64", "-M", "8",
                 "-Y", str(workdir), "-P", str(workdir / "kamailio.pid")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    @property
    def trunk(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def ready(self, within: float = 10.0) -> None:
        """Return once it answers an OPTIONS (fail after ``within`` s)."""
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            probe.setblocking(False)
            local = probe.getsockname()[1]
            options = (
                f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-ready\r\n"
                f"From: <sip:probe@127.0.0.1:{local}>;tag=probe\r\n"
                f"To: <sip:127.0.0.1:{self.port}>\r\n"
                "Call-ID: ready@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()

            async def answered() -> bool:
                assert self.process.poll() is None, self.log.read_text(errors="replace")
                probe.sendto(options, ("127.0.0.1", self.port))
                try:
                    async with asyncio.timeout(0.2):
                        reply = await loop.sock_recv(probe, 4096)
                except TimeoutError:
                    return False
                return reply.startswith(b"SIP/2.0 200")

            await eventually(answered, what="Kamailio's 200 to an OPTIONS", within=within)

    def close(self) -> None:
        _stop(self.process)


_BARESIP_CONFIG = """sip_listen 127.0.0.1:{port}
audio_player alsa,null
audio_alert alsa,null
audio_source aufile,{source}
rtp_ports {rtp_ports}
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module alsa.so
module sndfile.so
module_app account.so
snd_path {snd}
"""


# baresip listens for SIP on UDP and TCP at its port and opens its TLS listener one
# above (baresip 1.0 cannot turn TLS off). Kernel-chosen ports do not keep that
# neighbour free, so phones take even ports from below the kernel's ephemeral range
# (32768 up), a block per xdist worker.
_PHONE_PORTS = itertools.count(
    30_000 + 400 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")), 2
)


def _free(port: int, *kinds: socket.SocketKind) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def phone_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 with the one above free for TCP too."""
    for port in _PHONE_PORTS:
        if _free(port, socket.SOCK_DGRAM, socket.SOCK_STREAM) and _free(
            port + 1, socket.SOCK_STREAM
        ):
            return port
    raise AssertionError("unreachable: the count never ends")


class Baresip:
    """baresip 1.0 as a phone that answers at once, says ``source`` (an 8 kHz mono
    16-bit WAV) and writes what it hears to a WAV (its ``sndfile`` module, which
    records the decoded audio after the jitter buffer: what the user would hear)."""

    def __init__(self, workdir: Path, *, user: str, source: Path, rtp_ports: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = phone_port()
        self.user = user
        self.snd = workdir / "snd"
        self.snd.mkdir(exist_ok=True)
        (workdir / "config").write_text(
            _BARESIP_CONFIG.format(port=self.port, source=source, rtp_ports=rtp_ports, snd=self.snd)
        )
        (workdir / "accounts").write_text(
            f"<sip:{user}@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU,PCMA\n"
        )
        self.log = workdir / "baresip.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["baresip", "-f", str(workdir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def ready(self, within: float = 10.0) -> None:
        """Return once its log says it is ready (fail after ``within`` s)."""

        def said_ready() -> bool:
            assert self.process.poll() is None, self.log.read_text(errors="replace")
            return b"baresip is ready." in self.log.read_bytes()

        await eventually(said_ready, what="baresip is ready.", within=within, interval=0.05)

    def heard(self) -> bytes:
        """What the phone heard in its calls, as 8 kHz 16-bit mono PCM (stop it first:
        the WAV is complete once baresip has closed it)."""
        pcm = b""
        for path in sorted(self.snd.glob("*-dec.wav")):
            with wave.open(str(path), "rb") as wav:
                assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
                pcm += wav.readframes(wav.getnframes())
        return pcm

    def close(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (each exits cleanly on it, closing its files), then SIGKILL after 5 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
