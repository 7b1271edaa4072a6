"""A real ``maskline serve`` process on a free local port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.cli import MASKLINE, cli_env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[str]
    base_url: str
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def output_when(self, done: Callable[[str], bool], within: float = 10) -> str:
        """The output once ``done`` holds for it (a thread collects it as it comes), or
        what there is when ``within`` seconds have passed."""
        deadline = time.monotonic() + within
        while not done(self.output) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.output


@contextmanager
def running_server(
    env: dict[str, str], cwd: Path, *, extra_args: tuple[str, ...] = (), ready_timeout: float = 30
) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(
        [str(MASKLINE), "serve", "--port", str(port), *extra_args],
        env=cli_env(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = Server(process=process, base_url=f"http://127.0.0.1:{port}")
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: server.lines.extend(iter(stdout.readline, "")))
    reader.start()
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"maskline serve exited early:\n{server.output}")
            try:
                if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"maskline serve did not come up:\n{server.output}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        reader.join(timeout=5)
        stdout.close()
