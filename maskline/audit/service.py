"""Recording and reading the audit log (SPEC §12: key creation and revocation, webhook
secret rotation, member changes, top-ups and refunds; who, what, when, from where)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.audit.models import AuditEvent
from maskline.kit.scope import scoped

MAX_DETAIL = 500


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and from which address (None: not over the network, e.g. the CLI)."""

    name: str
    address: str | None = None


async def record(
    session: AsyncSession, org_id: str, actor: Actor, action: str, detail: str, *, now: datetime
) -> None:
    """Append one event, in the transaction of the change it describes."""
    session.add(
        AuditEvent(
            org_id=org_id,
            actor=actor.name,
            action=action,
            detail=detail[:MAX_DETAIL],
            address=actor.address,
            created_at=now,
        )
    )
    await session.flush()


async def latest(session: AsyncSession, org_id: str, *, limit: int = 200) -> list[AuditEvent]:
    """The organisation's newest events first."""
    rows = await session.execute(
        scoped(AuditEvent, org_id).order_by(AuditEvent.id.desc()).limit(limit)
    )
    return list(rows.scalars())
