"""httpcore's network on plain asyncio, for the webhook sender (``delivery.Clients``).

httpcore's own asyncio backend goes through anyio, which asks which library runs and
opens a cancel scope and a deadline for every read and write, and yields to the loop
after each write: about half of an attempt's CPU on a kept-alive connection. Here a
connection is an ``asyncio.Protocol`` whose reads come from what the loop has already
delivered, whose writes go to the transport at once, and whose timeouts are a timer
armed only when something has to be waited for. Whether an idle connection was closed
by its peer (httpcore asks each one before reusing it) is the protocol's own state: no
system call.

The failures raise httpcore's exceptions; a refused connection says why in the words
the HTTP/1.1 client's failures are recorded in (``delivery``, ``last_error``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import httpcore

# Past this much received and not yet read, the transport stops reading.
READ_HIGH_WATER = 256 * 1024


class _Connection(asyncio.Protocol):
    """What the loop delivered on one connection, and who waits for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.error: Exception | None = None
        self.paused = False
        self._reader: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport's subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake_reader()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    @property
    def readable(self) -> bool:
        """Something to read: data, the end of the stream, or an error."""
        return bool(self.chunks) or self.eof or self.lost

    async def wait_readable(self, timeout: float | None) -> None:  # noqa: ASYNC109 - httpcore's interface
        loop = asyncio.get_running_loop()
        self._reader = loop.create_future()
        try:
            await _within(loop, self._reader, timeout, httpcore.ReadTimeout)
        finally:
            self._reader = None

    async def wait_drained(self, timeout: float | None) -> None:  # noqa: ASYNC109 - httpcore's interface
        if not self._writing_paused or self.lost:
            return
        loop = asyncio.get_running_loop()
        self._drain = loop.create_future()
        try:
            await _within(loop, self._drain, timeout, httpcore.WriteTimeout)
        finally:
            self._drain = None


async def _within(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[None],
    timeout: float | None,  # noqa: ASYNC109 - httpcore's interface
    expired: type[httpcore.TimeoutException],
) -> None:
    """Wait for ``future``; past ``timeout`` seconds, raise ``expired``. A timer on the
    loop rather than ``asyncio.timeout``: the task is never cancelled by it, and nothing
    is set up when the answer is already there (the caller checks first)."""
    if timeout is None:
        await future
        return
    timer = loop.call_later(timeout, _expire, future, expired)
    try:
        await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[None], expired: type[httpcore.TimeoutException]) -> None:
    if not future.done():
        future.set_exception(expired())


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, connection: _Connection) -> None:
        self._transport = transport
        self._connection = connection
        self._closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 - httpcore's interface
        connection = self._connection
        if not connection.readable and not self._closed:
            await connection.wait_readable(timeout)
        if self._closed:
            raise httpcore.ReadError()
        if not connection.chunks:
            if connection.error is not None:
                raise httpcore.ReadError() from connection.error
            return b""
        chunk = connection.chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            connection.chunks.appendleft(rest)
        connection.buffered -= len(chunk)
        if connection.paused and connection.buffered <= READ_HIGH_WATER // 4:
            connection.paused = False
            self._transport.resume_reading()
        return chunk

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 - httpcore's interface
        if not buffer:
            return
        connection = self._connection
        if self._closed or connection.error is not None:
            raise httpcore.WriteError() from connection.error
        # Sent at once (or queued by the transport); only a full send buffer waits.
        self._transport.write(buffer)
        await connection.wait_drained(timeout)
        if connection.error is not None:
            raise httpcore.WriteError() from connection.error

    async def aclose(self) -> None:
        self._closed = True
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._connection, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            await self.aclose()
            raise httpcore.ConnectTimeout() from None
        except ssl.SSLError as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc)) from exc
        except (OSError, EOFError) as exc:
            await self.aclose()
            raise httpcore.ConnectError() from exc
        if transport is None:  # the loop's contract: only for a server's protocol
            await self.aclose()
            raise httpcore.ConnectError()
        self._connection.transport = transport
        return AsyncioStream(transport, self._connection)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._connection.readable
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioNetwork(httpcore.AsyncNetworkBackend):
    """TCP (and TLS over it) on the running asyncio loop; no unix sockets."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address is not None else None
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection, host, port, local_addr=local
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout() from None
        except OSError as exc:
            # In the words the HTTP/1.1 client's failures are recorded in (``delivery``).
            reason = os.strerror(exc.errno) if exc.errno else "cannot connect"
            raise httpcore.ConnectError(reason) from exc
        sock: socket.socket | None = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(transport, connection)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("webhooks are not sent over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
