"""ARCHITECTURE §3: a wake-up reaches the loops of other processes over LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from maskline.kit.notify import Topic, Wakeups


class TestWakeups:
    async def test_a_wake_up_reaches_the_other_processes_of_the_topic_only(
        self, database_url: str
    ) -> None:
        if database_url.startswith("sqlite"):
            pytest.skip("SQLite serves one process: wake-ups stay local")
        sender, receiver = Wakeups(database_url), Wakeups(database_url)
        calls, events, local = asyncio.Event(), asyncio.Event(), asyncio.Event()
        receiver.on(Topic.CALLS, calls.set)
        receiver.on(Topic.EVENTS, events.set)
        sender.on(Topic.CALLS, local.set)
        await sender.start()
        await receiver.start()
        try:
            await asyncio.wait_for(sender.wait_listening(), 10)
            await asyncio.wait_for(receiver.wait_listening(), 10)
            sender.wake(Topic.CALLS)
            assert local.is_set()
            await asyncio.wait_for(calls.wait(), 10)
            assert not events.is_set()
        finally:
            await sender.stop()
            await receiver.stop()

    async def test_topics_woken_together_all_reach_the_other_process(
        self, database_url: str
    ) -> None:
        if database_url.startswith("sqlite"):
            pytest.skip("SQLite serves one process: wake-ups stay local")
        sender, receiver = Wakeups(database_url), Wakeups(database_url)
        woken = {topic: asyncio.Event() for topic in Topic}
        for topic, event in woken.items():
            receiver.on(topic, event.set)
        await sender.start()
        await receiver.start()
        try:
            await asyncio.wait_for(sender.wait_listening(), 10)
            await asyncio.wait_for(receiver.wait_listening(), 10)
            # Woken before the sender's task runs: sent together, in one round trip.
            sender.wake(Topic.EVENTS)
            sender.wake(Topic.HANGUPS)
            await asyncio.wait_for(woken[Topic.EVENTS].wait(), 10)
            await asyncio.wait_for(woken[Topic.HANGUPS].wait(), 10)
            assert not woken[Topic.CALLS].is_set()
        finally:
            await sender.stop()
            await receiver.stop()

    async def test_a_listener_whose_connection_dies_reconnects_and_wakes_its_loops(
        self, database_url: str
    ) -> None:
        if database_url.startswith("sqlite"):
            pytest.skip("SQLite serves one process: wake-ups stay local")
        listener = Wakeups(database_url)
        calls = asyncio.Event()
        listener.on(Topic.CALLS, calls.set)
        await listener.start()
        try:
            await asyncio.wait_for(listener.wait_listening(), 10)
            admin = await asyncpg.connect(database_url)
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )
            finally:
                await admin.close()
            # At least ours (a listener of an earlier test may not have exited yet); had
            # ours survived, nothing below would wake.
            assert killed >= 1
            # Nothing is sent: only noticing the loss, reconnecting and catching up wakes it.
            await asyncio.wait_for(calls.wait(), 10)
            await asyncio.wait_for(listener.wait_listening(), 10)
        finally:
            await listener.stop()

    async def test_on_sqlite_a_wake_up_runs_this_process_hooks_only(
        self, database_url: str
    ) -> None:
        if not database_url.startswith("sqlite"):
            pytest.skip("PostgreSQL wake-ups are shared")
        wakeups = Wakeups(database_url)
        woken: list[str] = []
        wakeups.on(Topic.EVENTS, lambda: woken.append("events"))
        await wakeups.start()
        wakeups.wake(Topic.EVENTS)
        await wakeups.stop()
        assert (wakeups.shared, woken) == (False, ["events"])
