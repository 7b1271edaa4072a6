from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from maskline.kit.db import Base, UTCDateTime


class MaskedNumber(Base):
    """A virtual number; ``org_id`` null means the shared pool."""

    __tablename__ = "masked_numbers"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    number: Mapped[str] = mapped_column(String(12), unique=True)
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NumberLease(Base):
    """A masked number in use by a live call, once per party: the primary key forbids
    one party seeing the same masked number in two live calls."""

    __tablename__ = "number_leases"

    number: Mapped[str] = mapped_column(String(12), primary_key=True)
    party: Mapped[str] = mapped_column(String(10), primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(36), index=True)
