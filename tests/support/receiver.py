"""A real local HTTP endpoint that receives webhooks and answers as told."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float  # time.perf_counter() on arrival

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    # The worker opens up to 32 connections at once: the default backlog of 5 would
    # refuse some of them, and the test would see failed attempts that never arrived.
    request_queue_size = 128


def _gzip_of_zeros() -> tuple[bytes, bytes]:
    """The start of a gzip stream of zeros, and a block that goes on with 1 MiB more of them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    start = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return start, compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)


GZIP_START, GZIP_MORE = _gzip_of_zeros()
BOMB_BLOCKS = 200  # about 200 KiB on the wire, 200 MiB once gunzipped
HANG_UP_WAIT_SEC = 15.0


@dataclass(frozen=True)
class Answer:
    """A scripted answer. With ``gzip_bomb`` the body is a gzip stream of zeros that
    never ends: about 200 KiB are sent, then the connection is held open until the
    client hangs up (the number of body bytes sent until then is in ``hung_up``)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    gzip_bomb: bool = False
    # The answer waits until this is set (the request is counted as it arrives).
    hold: threading.Event | None = None


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.script: list[int | tuple[int, dict[str, str]] | Answer] = []
        # Per gzip bomb sent: the body bytes written before the client hung up.
        self.hung_up: list[int] = []
        self.default = 200
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    scripted = receiver.script.pop(0) if receiver.script else receiver.default
                    answer = _as_answer(scripted)
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append(
                        Received(headers, body, answer.status, time.perf_counter())
                    )
                    receiver._changed.notify_all()
                if answer.hold is not None:
                    answer.hold.wait(HANG_UP_WAIT_SEC)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if not answer.gzip_bomb:
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                # No Content-Length on this HTTP/1.0 answer: the body runs until we close.
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", "gzip")
                self.end_headers()
                sent = self._send_bomb()
                if sent is not None:
                    with receiver._lock:
                        receiver.hung_up.append(sent)
                        receiver._changed.notify_all()

            def _send_bomb(self) -> int | None:
                """The body bytes sent before the client hung up; None if it never did."""
                sent = 0
                try:
                    for block in [GZIP_START] + [GZIP_MORE] * BOMB_BLOCKS:
                        self.wfile.write(block)
                        sent += len(block)
                    self.wfile.flush()
                    # Hold the body open: only the client hanging up ends this answer.
                    self.connection.settimeout(HANG_UP_WAIT_SEC)
                    while self.connection.recv(4096):
                        pass
                except ConnectionError:
                    pass
                except TimeoutError:
                    return None
                return sent

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self.server = _Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def succeeded(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.answered < 300]

    def wait(self, predicate: Any, *, within: float = 20.0) -> list[Received]:
        """Block until ``predicate(requests)`` holds (a deadline, not a sleep)."""
        deadline = time.monotonic() + within
        with self._lock:
            while not predicate(list(self.requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver got {[(r.json.get('event'), r.answered) for r in self.requests]}"
                    )
                self._changed.wait(left)
            return list(self.requests)


def _as_answer(scripted: int | tuple[int, dict[str, str]] | Answer) -> Answer:
    if isinstance(scripted, Answer):
        return scripted
    if isinstance(scripted, tuple):
        return Answer(scripted[0], scripted[1])
    return Answer(scripted)


@contextmanager
def receiving(port: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(port)
    try:
        yield receiver
    finally:
        receiver.close()


async def until(receiver: Receiver, predicate: Any, *, within: float = 20.0) -> list[Received]:
    """``Receiver.wait`` without blocking the event loop the server under test runs on."""
    return await asyncio.to_thread(receiver.wait, predicate, within=within)
