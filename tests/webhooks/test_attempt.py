"""One delivery attempt against a real local receiver that misbehaves at the socket
level (SPEC §6): a kept-alive connection the receiver closed is not reused, and a
failed attempt records the network's error as it always has."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from maskline.webhooks.delivery import CONNECTIONS_PER_DESTINATION as PER_DESTINATION
from maskline.webhooks.delivery import AttemptResult, Clients, attempt
from tests.support.server import free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # SPEC §6's test vector
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


def _read_request(connection: socket.socket) -> bool:
    """Read one request (headers and a Content-Length body); False at the end."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)
    return True


@contextmanager
def receiver(serve: Callable[[socket.socket], None]) -> Iterator[tuple[int, list[int]]]:
    """A TCP server on a thread; ``serve`` gets each connection. Yields its port and a
    list that grows by one per connection accepted."""
    accepted: list[int] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            accepted.append(1)
            serve(self.request)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        # 16 connections at once: the default backlog of 5 resets some of them.
        request_queue_size = 64

    server = Server(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], accepted
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


async def post(clients: Clients, url: str) -> AttemptResult:
    now = datetime.now(UTC)
    return await attempt(
        clients,
        url=url,
        body=b'{"event":"webhook.test"}',
        msg_id="evt_2bJ4Qh0eTtkzLr9V",
        secrets=[SECRET],
        timestamp=int(now.timestamp()),
        allow_private=True,
        now=now,
    )


class TestKeepAlive:
    async def test_a_connection_kept_alive_is_used_again(self) -> None:
        def answer_all(connection: socket.socket) -> None:
            while _read_request(connection):
                connection.sendall(NO_CONTENT)

        clients = Clients()
        with receiver(answer_all) as (port, accepted):
            try:
                results = [await post(clients, f"http://127.0.0.1:{port}/h") for _ in range(3)]
            finally:
                await clients.aclose()
        assert [(r.ok, r.status_code, r.error) for r in results] == [(True, 204, None)] * 3
        assert len(accepted) == 1

    async def test_attempts_at_once_get_a_connection_each_and_use_them_again(self) -> None:
        def answer_all(connection: socket.socket) -> None:
            while _read_request(connection):
                connection.sendall(NO_CONTENT)

        clients = Clients()
        with receiver(answer_all) as (port, accepted):
            url = f"http://127.0.0.1:{port}/h"
            try:
                rounds = [
                    await asyncio.gather(*(post(clients, url) for _ in range(PER_DESTINATION)))
                    for _ in range(2)
                ]
            finally:
                await clients.aclose()
        answers = [(r.status_code, r.error) for results in rounds for r in results]
        assert answers == [(204, None)] * 2 * PER_DESTINATION
        assert len(accepted) == PER_DESTINATION

    async def test_a_connection_the_receiver_closed_while_idle_is_not_used_again(self) -> None:
        closed = threading.Event()

        def answer_once_then_close(connection: socket.socket) -> None:
            # Keep-alive as far as the answer says, then closed while idle.
            if _read_request(connection):
                connection.sendall(NO_CONTENT)
            connection.close()
            closed.set()

        clients = Clients()
        with receiver(answer_once_then_close) as (port, accepted):
            url = f"http://127.0.0.1:{port}/h"
            try:
                first = await post(clients, url)
                assert await asyncio.to_thread(closed.wait, 10)
                second = await post(clients, url)
            finally:
                await clients.aclose()
        assert [(r.ok, r.status_code, r.error) for r in (first, second)] == [
            (True, 204, None),
            (True, 204, None),
        ]
        assert len(accepted) == 2


async def _recorded(answer: Callable[[socket.socket], None]) -> tuple[bool, int | None, str | None]:
    """What one attempt to a receiver that ``answer``s each connection records."""
    clients = Clients()
    with receiver(answer) as (port, _):
        try:
            result = await post(clients, f"http://127.0.0.1:{port}/h")
        finally:
            await clients.aclose()
    return result.ok, result.status_code, result.error


class TestNetworkErrors:
    async def test_a_refused_connection_is_recorded_as_a_connect_error(self) -> None:
        clients = Clients()
        try:
            result = await post(clients, f"http://127.0.0.1:{free_port()}/h")
        finally:
            await clients.aclose()
        assert (result.ok, result.status_code, result.error) == (
            False,
            None,
            "ConnectError: Connection refused",
        )

    async def test_a_receiver_that_hangs_up_without_answering_is_recorded(self) -> None:
        def hang_up(connection: socket.socket) -> None:
            _read_request(connection)
            connection.close()

        assert await _recorded(hang_up) == (
            False,
            None,
            "RemoteProtocolError: Server disconnected without sending a response.",
        )

    async def test_an_answer_that_is_not_http_is_recorded_as_a_protocol_error(self) -> None:
        def garble(connection: socket.socket) -> None:
            _read_request(connection)
            connection.sendall(b"NOT HTTP\r\n\r\n")
            _read_request(connection)

        assert await _recorded(garble) == (
            False,
            None,
            "RemoteProtocolError: Bad status line: Expected HTTP/, RTSP/ or ICE/: b'NOT HTTP'",
        )

    async def test_an_answer_with_too_many_header_lines_is_refused_unread(self) -> None:
        def many_headers(connection: socket.socket) -> None:
            _read_request(connection)
            lines = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"x" * 1000) for n in range(65))
            connection.sendall(b"HTTP/1.1 204 No Content\r\n" + lines + b"\r\n")
            _read_request(connection)

        assert await _recorded(many_headers) == (
            False,
            None,
            "RemoteProtocolError: Too many headers received",
        )
