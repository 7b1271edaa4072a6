"""The calls domain's side of recordings (``recordings.calls.Calls``): a call's recording
status is kept on the call, and ``recording.ready`` is one of the call's events."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.calls.lifecycle import load_call, record_call_event
from maskline.calls.models import Call
from maskline.calls.service import find_call


class RecordedCalls:
    def __init__(self, *, public_url: str) -> None:
        self._public_url = public_url

    async def find(self, session: AsyncSession, org_id: str, call_sid: str) -> str:
        return (await find_call(session, org_id, call_sid)).call_sid

    async def bridged_seconds(self, session: AsyncSession, call_sid: str) -> float | None:
        bridged_at, ended_at = (
            await session.execute(
                select(Call.bridged_at, Call.ended_at).where(Call.call_sid == call_sid)
            )
        ).one()
        if bridged_at is None or ended_at is None:
            return None
        return max(0.0, (ended_at - bridged_at).total_seconds())

    async def set_recording_status(
        self, session: AsyncSession, call_sids: Collection[str], status: Literal["failed", "none"]
    ) -> None:
        await session.execute(
            update(Call).where(Call.call_sid.in_(call_sids)).values(recording_status=status)
        )

    async def recording_ready(self, session: AsyncSession, call_sid: str, *, now: datetime) -> None:
        call = await load_call(session, call_sid)
        call.recording_status = "ready"
        await record_call_event(
            session, call, "recording.ready", public_url=self._public_url, now=now
        )
