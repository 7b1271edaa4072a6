"""Run the real ``maskline`` command in a subprocess."""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import forks

MASKLINE = Path(sys.executable).parent / "maskline"
ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASKLINE_")}
    env.update(settings_env)
    return env


class _ForkServer:
    """This session's fork server (``tests/support/forks.py``), started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._path = ""

    def path(self) -> str:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._path = os.path.join(tempfile.mkdtemp(prefix="maskline-forks-"), "sock")
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "tests.support.forks", self._path],
                    cwd=ROOT,
                    env=cli_env({}),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert self._process.stdout is not None
                ready = self._process.stdout.readline()
                assert ready == "ready\n", f"the fork server did not start: {ready!r}"
                atexit.register(self.stop)
            return self._path

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


_FORKS = _ForkServer()


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> CliResult:
    """``maskline ARGS`` in a process of its own, forked from this session's fork server
    (or, with ``MASKLINE_TEST_CLI=exec``, the installed command)."""
    if os.environ.get("MASKLINE_TEST_CLI") == "exec":
        return run_installed(*args, env=env, cwd=cwd)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60)
        conn.connect(_FORKS.path())
        forks.send(conn, {"args": list(args), "env": cli_env(env), "cwd": str(cwd)})
        done = forks.receive(conn)
    return CliResult(done["code"], done["stdout"], done["stderr"])


class ForkedProcess:
    """A command started by the fork server (``start_forked``), with what the tests use
    of ``subprocess.Popen``: ``pid`` (its process group too), ``poll`` and ``wait``."""

    def __init__(self, conn: socket.socket, pid: int) -> None:
        self._conn = conn
        self.pid = pid
        self.returncode: int | None = None
        self._ended = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        try:
            self.returncode = forks.receive(self._conn)["returncode"]
        finally:
            self._conn.close()
            self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(["maskline"], timeout or 0)
        if self.returncode is None:
            raise RuntimeError("the fork server's monitor ended without an exit status")
        return self.returncode


def start_forked(*args: str, env: dict[str, str], cwd: Path, output: int) -> ForkedProcess:
    """``maskline ARGS`` forked from this session's fork server in a session of its own,
    its stdout and stderr written to the file descriptor ``output``: a long-running
    command such as ``serve``, without the installed script's second of imports."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(_FORKS.path())
        forks.send_with_fds(
            conn,
            {"args": list(args), "env": cli_env(env), "cwd": str(cwd), "detached": True},
            [output],
        )
        conn.settimeout(60)
        pid: int = forks.receive(conn)["pid"]
        conn.settimeout(None)
    except BaseException:
        conn.close()
        raise
    return ForkedProcess(conn, pid)


def run_installed(*args: str, env: dict[str, str], cwd: Path) -> CliResult:
    """``maskline ARGS`` as the installed script, started afresh."""
    done = subprocess.run(
        [str(MASKLINE), *args],
        env=cli_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)
