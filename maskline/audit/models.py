from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from maskline.kit.db import Base, UTCDateTime


class AuditEvent(Base):
    """One change an owner may want to trace, kept with the organisation."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_org_id_id", "org_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    # Who: a portal user's email, or a system actor ("razorpay", "operator").
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(String(500))
    address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
