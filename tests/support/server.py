"""A real ``maskline serve`` process on a free local port (forked from the session's
fork server, or with ``MASKLINE_TEST_CLI=exec`` the installed script)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.calls import TERMINAL
from tests.support.cli import MASKLINE, ForkedProcess, cli_env, start_forked
from tests.support.waits import eventually_blocking


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[str] | ForkedProcess
    base_url: str
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def output_when(self, done: Callable[[str], bool], within: float = 10) -> str:
        """The output once ``done`` holds for it (a thread collects it as it comes); fails,
        showing the output, once ``within`` seconds have passed."""
        return eventually_blocking(
            lambda: self.output, done, what="the server's output", within=within
        )


@contextmanager
def running_server(
    env: dict[str, str],
    cwd: Path,
    *,
    extra_args: tuple[str, ...] = (),
    ready_timeout: float = 30,
    port: int | None = None,
    installed: bool = False,
) -> Iterator[Server]:
    """``port``: one chosen beforehand (to name it in ``MASKLINE_PUBLIC_URL``);
    ``installed``: the installed script, as an operator starts it, whatever
    ``MASKLINE_TEST_CLI`` says (the benchmarks: a process forked from the fork server
    shares its memory and its interpreter's state, and is not what is measured)."""
    port = port or free_port()
    args = ("serve", "--port", str(port), *extra_args)
    process: subprocess.Popen[str] | ForkedProcess
    if installed or os.environ.get("MASKLINE_TEST_CLI") == "exec":
        process = subprocess.Popen(
            [str(MASKLINE), *args],
            env=cli_env(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert process.stdout is not None
        stdout = process.stdout
    else:
        # Forked from the session's fork server: the same entry point as the installed
        # script, without its second of imports (tests/support/forks.py).
        read, write = os.pipe()
        try:
            process = start_forked(*args, env=env, cwd=cwd, output=write)
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        stdout = os.fdopen(read, encoding="utf-8", errors="replace")
    server = Server(process=process, base_url=f"http://127.0.0.1:{port}")
    reader = threading.Thread(target=lambda: server.lines.extend(iter(stdout.readline, "")))
    reader.start()

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"maskline serve exited early:\n{server.output}")
        try:
            return httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        try:
            eventually_blocking(healthy, what="/healthz", within=ready_timeout, interval=0.1)
        except AssertionError as slow:
            raise RuntimeError(f"maskline serve did not come up:\n{server.output}") from slow
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


def ended_call(
    base_url: str, call_sid: str, auth: dict[str, str], *, within: float = 20.0
) -> dict[str, Any]:
    """The call from a running server's API once it has ended (a deadline, not a sleep)."""

    def fetch() -> dict[str, Any]:
        response = httpx.get(f"{base_url}/v1/masking/calls/{call_sid}", headers=auth)
        data: dict[str, Any] = response.json()["data"]
        return data

    return eventually_blocking(
        fetch,
        lambda call: call["status"] in TERMINAL,
        what=f"call {call_sid} to end",
        within=within,
        interval=0.05,
    )
