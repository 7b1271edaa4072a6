from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from maskline.kit.db import Base, UTCDateTime


class Recording(Base):
    """A bridged call's recording: the encoding job while ``pending``, then the file.

    The row is written in the transaction that ends the call, so a recording can
    no more be lost than the call's end. Workers claim pending rows by lease.
    """

    __tablename__ = "recordings"
    __table_args__ = (
        Index("ix_recordings_due", "status", "next_attempt_at"),
        Index("ix_recordings_status_ready", "status", "ready_at"),
    )

    call_sid: Mapped[str] = mapped_column(ForeignKey("calls.call_sid"), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    # pending -> ready | failed; deleted once its file is gone (API or retention).
    status: Mapped[str] = mapped_column(String(8))
    object_key: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
