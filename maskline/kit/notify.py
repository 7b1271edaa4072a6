"""Wake-ups: local loops at once, other processes over PostgreSQL ``LISTEN/NOTIFY``.

An API process that accepts a call wakes the engine that will dial it; an engine
that commits events wakes the workers that deliver and record them. Within one
process that is a direct call. Across processes (ARCHITECTURE §3) the waker
sends ``NOTIFY`` after its commit and every process ``LISTEN``s on one dedicated
connection. A notification is only a hint: every woken loop still polls, so a
lost connection or a missed notification delays work by one poll, never loses it.
Wake-ups are coalesced: however many arrive while one is being sent, one follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from maskline.settings import database_url

log = logging.getLogger("maskline.notify")

RECONNECT_SEC = 1.0
CONNECT_TIMEOUT_SEC = 5.0
STOP_SEC = CONNECT_TIMEOUT_SEC + 5.0
Hook = Callable[[], None]


class Topic(StrEnum):
    CALLS = "maskline_calls"  # a call to claim
    HANGUPS = "maskline_hangups"  # a hang-up asked for through the API
    EVENTS = "maskline_events"  # committed events to deliver, recordings to encode


def _dsn(url: str | URL) -> str | None:
    """The plain PostgreSQL DSN for asyncpg, or None for SQLite (one process only)."""
    url = database_url(url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Broadcast:
    """A wake-up for any number of waiters at once (a hook for ``Wakeups.on``).

    A waiter takes ``ticket()`` before it looks at what it waits for, then waits on
    the ticket: a wake-up between its look and its wait is not missed.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


class Wakeups:
    def __init__(self, url: str | URL) -> None:
        """``url``: ``Settings.database_url`` (a plain URL string is taken too)."""
        self._dsn = _dsn(url)
        self._hooks: dict[Topic, list[Hook]] = {topic: [] for topic in Topic}
        self._pending: set[Topic] = set()
        self._send = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._stopping = asyncio.Event()

    @property
    def shared(self) -> bool:
        """True when wake-ups reach other processes (PostgreSQL)."""
        return self._dsn is not None

    def on(self, topic: Topic, hook: Hook) -> None:
        self._hooks[topic].append(hook)

    def wake(self, topic: Topic) -> None:
        """Wake this process's loops for ``topic`` now, and other processes' soon after."""
        self._run_hooks(topic)
        if self._dsn is not None:
            self._pending.add(topic)
            self._send.set()

    async def start(self) -> None:
        if self._dsn is not None:
            self._task = asyncio.create_task(self._run(self._dsn), name="maskline wakeups")

    async def wait_listening(self) -> None:
        """Until notifications from other processes are being received (tests, readiness)."""
        await self._listening.wait()

    async def stop(self) -> None:
        """Close the connection and end the task. Asked, not cancelled: a connection
        cancelled half-way through opening would be left unclosed."""
        if self._task is None:
            return
        self._stopping.set()
        self._send.set()
        done, _ = await asyncio.wait({self._task}, timeout=STOP_SEC)
        if not done:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def _run_hooks(self, topic: Topic) -> None:
        for hook in self._hooks[topic]:
            hook()

    async def _run(self, dsn: str) -> None:
        while not self._stopping.is_set():
            try:
                await self._session(dsn)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("wake-up connection lost (%s); polling until it is back", exc)
            self._listening.clear()
            if self._stopping.is_set():
                return
            # Whatever was missed meanwhile is found by the woken loops' polling; wake
            # them once now so that they look at once.
            await _first(asyncio.sleep(RECONNECT_SEC), self._stopping.wait())
            for topic in Topic:
                self._run_hooks(topic)

    async def _session(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SEC)
        lost = asyncio.Event()
        try:
            own_pid = conn.get_server_pid()

            def received(_conn: object, pid: int, channel: str, _payload: object) -> None:
                if pid != own_pid:  # this process's own hooks already ran
                    self._run_hooks(Topic(channel))

            def terminated(_conn: object) -> None:
                lost.set()
                self._send.set()

            # A listener that never sends would not notice a dead connection otherwise.
            conn.add_termination_listener(terminated)
            for topic in Topic:
                await conn.add_listener(topic.value, received)
            self._listening.set()
            while not lost.is_set():
                # One event for a topic to send, a lost connection and a stop: a wait on
                # three would make and cancel tasks for every wake-up sent.
                await self._send.wait()
                if self._stopping.is_set():
                    return
                if lost.is_set():
                    break
                self._send.clear()
                topics, self._pending = self._pending, set()
                if not topics:
                    # Set by the lost connection before this one, or by a stop.
                    continue
                try:
                    # Every pending topic in one round trip, as a simple query: no
                    # statement to bind (``pg_notify($1)`` cost the API process 5% of
                    # its CPU at 50 calls a second). The channels are our own names.
                    await conn.execute(";".join(f"NOTIFY {topic.value}" for topic in topics))
                except BaseException:
                    self._pending |= topics  # sent after the reconnection
                    raise
            raise ConnectionResetError("the wake-up connection was closed")
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    """Until the first of ``waits`` finishes (the others are cancelled)."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
