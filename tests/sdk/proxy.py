"""A TCP proxy in front of a real server that drops chosen connections part-way through
the answer: the network failure a client library must survive."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class DroppingProxy:
    """Connection ``n`` (counting from 0) is cut after ``cuts[n]`` bytes of the server's
    answer (0: once the server has answered, none of it reaches the client); the others
    pass whole."""

    def __init__(self, upstream_port: int, cuts: dict[int, int]) -> None:
        self.upstream_port = upstream_port
        self.cuts = dict(cuts)
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                cut = self.cuts.get(self.connections)
                self.connections += 1
            thread = threading.Thread(target=self._relay, args=(client, cut), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _relay(self, client: socket.socket, cut: int | None) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))

        def forward() -> None:
            try:
                while data := client.recv(65536):
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=forward, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                if cut is not None:
                    data = data[: max(0, cut - sent)]
                client.sendall(data)
                sent += len(data)
                if cut is not None and sent >= cut:
                    break
        except OSError:
            pass
        finally:
            # shutdown() first: the other thread's recv() holds the sockets open, so a bare
            # close() would never send the client its FIN.
            for end in (client, upstream):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def close(self) -> None:
        # Shutting the listener down wakes the accept() blocked in serve().
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


@contextmanager
def dropping_proxy(upstream_port: int, cuts: dict[int, int]) -> Iterator[DroppingProxy]:
    proxy = DroppingProxy(upstream_port, cuts)
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
        thread.join(timeout=5)
