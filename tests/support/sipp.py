"""SIPp as the trunk (and the phones behind it) on loopback, for the sip carrier's tests."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent.parent / "telephony" / "sip" / "scenarios"
_ENTRY = re.compile(
    r"^-+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*\n"
    r"(UDP message (?:received \[\d+\] bytes :|sent \(\d+ bytes\):))\s*$",
    re.MULTILINE,
)


def fragment(name: str) -> str:
    """A piece of scenario from ``scenarios/fragments`` (what a party does once answered)."""
    return (SCENARIOS / "fragments" / f"{name}.xml").read_text()


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Message:
    received: bool  # by SIPp, i.e. sent by maskline
    first_line: str
    text: str
    at: float  # SIPp's wall-clock time of it, in seconds since the epoch

    def header(self, name: str) -> str | None:
        for line in self.text.splitlines()[1:]:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return None


class Sipp:
    """One SIPp process running ``scenario`` as a UAS for ``calls`` calls."""

    def __init__(
        self,
        scenario: str,
        workdir: Path,
        *,
        calls: int,
        pause_ms: int = 1000,
        variables: dict[str, str] | None = None,
        fill: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
        timeout_sec: int = 60,
        host: str = "127.0.0.1",
    ) -> None:
        """``variables`` are SIPp globals (``-set``); ``fill`` replaces ``@NAME@`` in the
        scenario text before SIPp reads it (for what SIPp checks at load, like codes).
        ``options`` may end with SIPp's remote address, making it a UAC. ``host`` is the
        loopback address SIPp sends from (another one than the trunk's: a stranger)."""
        self.host = host
        self.port = free_udp_port(host)
        self.workdir = workdir
        self.log = workdir / "messages.log"
        workdir.mkdir(parents=True, exist_ok=True)
        text = (SCENARIOS / scenario).read_text()
        for name, value in (fill or {}).items():
            text = text.replace(f"@{name}@", value)
        script = workdir / scenario
        script.write_text(text)
        command = [
            "sipp", "-sf", str(script), "-i", host,
            "-p", str(self.port), "-m", str(calls), "-d", str(pause_ms),
            "-nostdin", "-timeout", f"{timeout_sec}s", "-timeout_error",
            "-trace_msg", "-message_file", str(self.log),
            "-trace_err", "-error_file", str(workdir / "errors.log"),
            *options,
        ]  # fmt: skip
        for name, value in (variables or {}).items():
            command += ["-set", name, value]
        self.process = subprocess.Popen(
            command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._stderr = ""

    @property
    def trunk(self) -> str:
        return f"{self.host}:{self.port}"

    async def finished(self, within: float = 30.0) -> int:
        """SIPp's exit code once its calls are done (0: every call passed its scenario).

        If it is still running after ``within`` seconds it is stopped, and the
        ``TimeoutError`` says what it saw (``errors()``)."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.process.wait), within)
        except TimeoutError:
            # SIGTERM, not SIGKILL: SIPp writes out its logs as it exits.
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.process.wait, 5)
            raise TimeoutError(
                f"SIPp did not finish within {within} s (stopped now)\n{self.errors()}"
            ) from None

    def errors(self) -> str:
        """What went wrong in SIPp's eyes, for a failure message: its error log, its
        stderr once it has exited, and every message it sent and received, in order."""
        path = self.workdir / "errors.log"
        logged = path.read_text(errors="replace").strip() if path.exists() else ""
        stderr = ""
        if self.process.poll() is not None and self.process.stderr is not None:
            with contextlib.suppress(ValueError):  # closed by close()
                stderr = self.process.stderr.read().decode(errors="replace").strip()
                self._stderr = stderr
        stderr = stderr or self._stderr
        start = None
        lines = []
        for m in self.messages():
            start = m.at if start is None else start
            arrow = "-> SIPp" if m.received else "<- SIPp"
            lines.append(f"  {m.at - start:7.3f} s {arrow} {m.first_line} ({m.header('CSeq')})")
        return "\n".join(
            [
                f"SIPp exit code: {self.process.poll()}",
                f"SIPp errors: {logged or '(none)'}",
                f"SIPp stderr: {stderr or '(none)'}",
                "SIPp messages (-> received from maskline, <- sent to it):",
                *(lines or ["  (none)"]),
            ]
        )

    def messages(self) -> list[Message]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        found: list[Message] = []
        parts = _ENTRY.split(text)
        for stamp, kind, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
            message = body.split("\n-----", 1)[0].strip()
            first = message.splitlines()[0] if message else ""
            at = datetime.fromisoformat(stamp).timestamp()
            found.append(Message("received" in kind, first, message, at))
        return found

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
