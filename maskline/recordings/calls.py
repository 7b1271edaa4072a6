"""What recordings need of the calls they belong to.

A call's end queues its recording, so the calls domain imports recordings; recordings
never import calls. They reach a call through this protocol instead, which the calls
domain implements (``calls.recorded.RecordedCalls``) and the composition root hands in.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession


class Calls(Protocol):
    async def find(self, session: AsyncSession, org_id: str, call_sid: str) -> str:
        """The stored sid of the organisation's call ``call_sid``; NotFound (the API's 404
        for a call) when the organisation has no such call."""
        ...

    async def bridged_seconds(self, session: AsyncSession, call_sid: str) -> float | None:
        """How long the call was bridged (its recording's length); None if it never was."""
        ...

    async def set_recording_status(
        self, session: AsyncSession, call_sids: Collection[str], status: Literal["failed", "none"]
    ) -> None:
        """The calls' recordings failed for good, or are gone: the calls say so."""
        ...

    async def recording_ready(self, session: AsyncSession, call_sid: str, *, now: datetime) -> None:
        """The call's recording is ready: the call says so, and ``recording.ready`` goes
        into its events (SPEC §6), in this transaction."""
        ...
