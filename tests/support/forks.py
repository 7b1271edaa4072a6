"""The ``maskline`` command run in a process forked from one that has imported it.

Starting the installed command costs about 0.9 s of CPU, nearly all of it imports, and
the suite runs it hundreds of times. This module is a fork server: one process per test
session imports the command's modules once; each run is a fresh process forked from it,
given its own arguments, environment, directory, stdin and output files, which runs the
same entry point as the installed script (``maskline.cli.main:main``) and exits. What a
test sees (exit code, stdout, stderr, what the command stored) is what the installed
command gives: ``tests/cli/test_settings.py`` runs the installed script itself, and
``MASKLINE_TEST_CLI=exec`` runs every call that way.

A long-running command (``maskline serve``) is asked for with ``"detached": true`` and
the write end of a pipe passed along: a monitor forked from the server forks the command
in a session of its own (its pid is its process group, as with ``start_new_session``),
its stdout and stderr that pipe, answers with its pid, and once it has ended with its
exit status as ``subprocess.Popen.returncode`` gives it (``-N`` for a signal).

Run as ``python -m tests.support.forks SOCKET``: it prints ``ready`` once it listens.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import signal
import socket
import struct
import sys
import tempfile
import traceback
from typing import Any

# What the commands import when they run (each imports its own lazily, so that the
# installed command's --help stays fast): imported here once, before any fork.
PRELOAD = (
    "aiosqlite",
    "asyncpg",
    "maskline.app",
    "maskline.runtime",
    "maskline.tables",
    "maskline.kit.migrate",
    "maskline.cli.main",
)
_LENGTH = struct.Struct("!I")


def send(conn: socket.socket, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    conn.sendall(_LENGTH.pack(len(data)) + data)


def send_with_fds(conn: socket.socket, payload: dict[str, Any], fds: list[int]) -> None:
    """``send``, the file descriptors passed along with the message's first byte."""
    data = json.dumps(payload).encode()
    message = _LENGTH.pack(len(data)) + data
    sent = socket.send_fds(conn, [message[:1]], fds)
    conn.sendall(message[sent:])


def receive_with_fds(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """``receive`` of a message that may carry file descriptors (``send_with_fds``)."""
    first, fds, _, _ = socket.recv_fds(conn, 1, 4)
    if not first:
        raise ConnectionError("the other end closed the connection before a message")
    header = first + _exactly(conn, _LENGTH.size - 1)
    (length,) = _LENGTH.unpack(header)
    loaded: dict[str, Any] = json.loads(_exactly(conn, length))
    return loaded, fds


def receive(conn: socket.socket) -> dict[str, Any]:
    header = _exactly(conn, _LENGTH.size)
    (length,) = _LENGTH.unpack(header)
    loaded: dict[str, Any] = json.loads(_exactly(conn, length))
    return loaded


def _exactly(conn: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = conn.recv(min(size, 1 << 16))
        if not chunk:
            raise ConnectionError("the other end closed the connection mid-message")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _main(args: list[str]) -> int:
    """The installed script's entry point with these arguments; its exit code."""
    sys.argv = ["maskline", *args]
    try:
        from maskline.cli.main import main

        main()
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException:  # what the installed script would print and exit 1 on
        traceback.print_exc()
        return 1
    return 0


def _returncode(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _detached(conn: socket.socket, request: dict[str, Any], output: int) -> None:
    """In the forked monitor: start the command in a session of its own writing to
    ``output``, answer with its pid, then with its exit status once it has ended."""
    pid = os.fork()
    if pid == 0:
        conn.close()
        os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        with open(os.devnull, "rb") as devnull:
            os.dup2(devnull.fileno(), 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        code = _main(request["args"])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(output)
    send(conn, {"pid": pid})
    _, status = os.waitpid(pid, 0)
    send(conn, {"returncode": _returncode(status)})


def _run(conn: socket.socket) -> None:
    """In the forked child: run one command as the request says, answer, exit."""
    request, fds = receive_with_fds(conn)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if request.get("detached"):
        _detached(conn, request, fds[0])
        return
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with open(os.devnull, "rb") as devnull:
            os.dup2(devnull.fileno(), 0)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        code = _main(request["args"])
        sys.stdout.flush()
        sys.stderr.flush()
        out.seek(0)
        err.seek(0)
        answer = {
            "code": code,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }
    send(conn, answer)


def serve(path: str) -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    import maskline.cli

    for command in pkgutil.iter_modules(maskline.cli.__path__, "maskline.cli."):
        importlib.import_module(command.name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children are reaped as they exit
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            try:
                _run(conn)
            finally:
                os._exit(0)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
