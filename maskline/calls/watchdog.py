"""The watchdog: every live call reaches a terminal state, whatever happened to its engine.

Each engine sweeps for live calls that no runner drives: those of engines whose
lease lapsed (dead, or a runner that crashed), and calls nobody claimed within
``MASKLINE_CALL_MAX_LIFETIME_SEC``. Each is ended in a savepoint of its own, so
one row that cannot be ended never holds the others back. Once the sweep is
committed, the legs still up at the trunk are hung up from their stored SIP
dialogs (nothing goes on the wire from inside a transaction), and the workers
are woken for the terminal events (SPEC §8).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.calls.flow import Emit, LifetimeExceeded, Shutdown, step
from maskline.calls.lifecycle import apply_state, state_of
from maskline.calls.models import LIVE_STATUSES, Call
from maskline.kit.clock import Clock
from maskline.kit.db import Database
from maskline.kit.writer import is_retryable, made_at_once
from maskline.settings import Settings
from maskline.telephony.carrier import Carrier
from maskline.telephony.events import Dialog
from maskline.worker.lease import unleased

log = logging.getLogger("maskline.watchdog")

BATCH = 50


@dataclass(frozen=True, slots=True)
class _Bye:
    carrier: Carrier
    call_sid: str
    dialogs: list[Dialog]


@dataclass(slots=True)
class _Swept:
    """What one run of a sweep's transaction did, acted on once it is committed."""

    ended: int = 0
    full_batch: bool = False
    failed: list[str] = field(default_factory=list)
    byes: list[_Bye] = field(default_factory=list)


class Watchdog:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: Settings,
        carriers: dict[str, Carrier],
        engine_id: str,
        on_events: Callable[[], None] | None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self._carriers = carriers
        self._engine_id = engine_id
        self._on_events = on_events
        # Calls this engine failed to end (logged): left to the other engines, not retried
        # here, so that they cannot fill every sweep.
        self._failed: set[str] = set()

    async def sweep(self, driven: Callable[[], Collection[str]]) -> bool:
        """End one batch of orphaned calls; True when there may be more at once.

        ``driven`` names the calls this engine's runners drive at the moment it is asked:
        it is asked again after the query, as a claim that was waiting for the write lock
        may have started runners meanwhile. Those calls are alive, whatever their lease.
        """
        now = self._clock.now()
        oldest = now - timedelta(seconds=self._settings.call_max_lifetime_sec)

        async def end_orphans(session: AsyncSession) -> _Swept:
            swept = _Swept()
            skip = {*driven(), *self._failed}
            query = (
                select(Call)
                .where(
                    Call.status.in_(LIVE_STATUSES),
                    or_(
                        and_(Call.engine_id.is_not(None), unleased(Call.lease_expires_at, now)),
                        # Accepted but never claimed (no engine has been running).
                        and_(Call.engine_id.is_(None), Call.created_at < oldest),
                    ),
                )
                .order_by(Call.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
            if skip:
                query = query.where(Call.call_sid.not_in(skip))
            orphans = list((await session.execute(query)).scalars())
            swept.full_batch = len(orphans) == BATCH
            alive = driven()
            for call in orphans:
                if call.call_sid in alive:
                    continue
                sid = call.call_sid
                try:
                    # Its settlement is made here, in its savepoint, not by the batch:
                    # a call that cannot be settled fails alone.
                    with made_at_once(session):
                        async with session.begin_nested():
                            await self._end(session, call, now)
                except Exception as exc:
                    if is_retryable(exc):
                        raise  # the whole sweep runs again, this call included
                    log.exception("cannot end an orphaned call", extra={"call_sid": sid})
                    swept.failed.append(sid)
                    continue
                swept.ended += 1
                swept.byes.extend(self._byes(call))
            return swept

        swept = await self._db.transaction(end_orphans)
        self._failed.update(swept.failed)
        for bye in swept.byes:
            bye.carrier.end_orphan(bye.call_sid, bye.dialogs)
        if swept.ended and self._on_events is not None:
            self._on_events()
        return swept.full_batch

    async def _end(self, session: AsyncSession, call: Call, now: datetime) -> None:
        log.warning("ending a call no engine drives", extra={"call_sid": call.call_sid})
        last_seen = max(
            t for t in (call.heartbeat_at, call.bridged_at, call.answered_at, call.created_at) if t
        )
        # Bridged time is billed up to the dead engine's last heartbeat, which becomes
        # ended_at. A call no engine ever claimed just outlived its lifetime.
        event = Shutdown(last_seen) if call.engine_id is not None else LifetimeExceeded(now)
        ended, commands = step(state_of(call), event)
        call.engine_id = self._engine_id
        await apply_state(
            session,
            call,
            ended,
            events=[c.event for c in commands if isinstance(c, Emit)],
            public_url=self._settings.public_url,
            now=now,
        )

    def _byes(self, call: Call) -> list[_Bye]:
        """The legs to hang up at the trunk from their stored dialogs (SPEC §8)."""
        if not call.sip_dialogs:
            return []
        carrier = self._carriers.get(call.carrier)
        if carrier is None:
            log.error("no %s carrier here to hang up a dead engine's call", call.carrier)
            return []
        try:
            dialogs = [Dialog.from_json(d) for d in call.sip_dialogs.values()]
        except (AttributeError, KeyError, TypeError, ValueError):
            log.exception("unreadable stored dialogs: no BYE", extra={"call_sid": call.call_sid})
            return []
        return [_Bye(carrier, call.call_sid, dialogs)]
