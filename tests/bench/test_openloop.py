"""The end-to-end probe's sender (``bench/openloop.py``) is open-loop: each request goes at
its own time, whatever the server does with the earlier ones."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench.openloop import finish, start_open_loop

REQUESTS = 20
RESPONSE = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class HoldingServer:
    """Answers no request until ``REQUESTS`` requests have arrived, then all of them: a
    closed-loop client (a request only after the last response on its connection) never
    gets there, whatever its number of connections below ``REQUESTS``."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.bodies: list[dict[str, str | bool]] = []
        self._arrived = threading.Condition()
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._connection, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _connection(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            while stream.readline():  # the request line
                length = 0
                while (header := stream.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                with self._arrived:
                    self.bodies.append(json.loads(stream.read(length)))
                    self._arrived.notify_all()
                    self._arrived.wait_for(lambda: len(self.bodies) >= REQUESTS, timeout=30)
                conn.sendall(RESPONSE)


@contextmanager
def holding_server() -> Iterator[HoldingServer]:
    server = HoldingServer()
    acceptor = threading.Thread(target=server.serve, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        # shutdown() wakes the accept() in progress; close() alone does not.
        server.listener.shutdown(socket.SHUT_RDWR)
        server.listener.close()
        acceptor.join(timeout=5)


@pytest.mark.subprocess
def test_every_request_goes_at_its_time_while_none_is_answered() -> None:
    with holding_server() as server:
        sender = start_open_loop(
            [server.address], "the-key", rate=50, seconds=REQUESTS / 50, first_party=7_000_009_998
        )
        outcome = finish(sender, REQUESTS / 50)
    assert outcome.sent == REQUESTS
    assert outcome.statuses == {"201": REQUESTS}
    assert outcome.errors == {}
    # 4 connections opened before the first request, then one for each request that found
    # them all waiting.
    assert outcome.connections == REQUESTS
    parties = [str(body[p]) for body in server.bodies for p in ("party_a", "party_b")]
    # New parties for every call, none ending in the sim's magic 0000-0003 (9998, 9999,
    # then 0000-0003 skipped, 0004 …).
    assert sorted(parties) == [str(n) for n in range(7_000_009_998, 7_000_010_000)] + [
        str(n) for n in range(7_000_010_004, 7_000_010_042)
    ]
    assert {body["record"] for body in server.bodies} == {False}


@pytest.mark.subprocess
def test_with_party_a_from_request_i_pairs_a_plus_i_with_b_plus_i() -> None:
    # The SIP probe's parties: SIPp tells A's legs from B's, and pairs them, by number.
    with holding_server() as server:
        sender = start_open_loop(
            [server.address],
            "the-key",
            rate=50,
            seconds=REQUESTS / 50,
            first_party=7_110_000_000,
            party_a_from=9_810_000_000,
        )
        outcome = finish(sender, REQUESTS / 50)
    assert outcome.statuses == {"201": REQUESTS}
    pairs = sorted((str(body["party_a"]), str(body["party_b"])) for body in server.bodies)
    assert pairs == [(str(9_810_000_000 + i), str(7_110_000_000 + i)) for i in range(REQUESTS)]
