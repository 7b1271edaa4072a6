from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from maskline.kit.db import Base, UTCDateTime


class Organisation(Base):
    __tablename__ = "organisations"
    __table_args__ = (
        CheckConstraint("rate_paise >= 0", name="rate_non_negative"),
        CheckConstraint("pulse_sec > 0", name="pulse_positive"),
        CheckConstraint("max_live_calls >= 0", name="max_live_calls_non_negative"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    is_sandbox: Mapped[bool] = mapped_column(Boolean, default=False)
    gstin: Mapped[str | None] = mapped_column(String(15))
    state_code: Mapped[str | None] = mapped_column(String(2))
    # The billing profile (SPEC §12): printed on invoices; the name when unset.
    legal_name: Mapped[str | None] = mapped_column(String(100))
    billing_address: Mapped[str | None] = mapped_column(String(500))
    rate_paise: Mapped[int] = mapped_column(Integer, default=150)
    pulse_sec: Mapped[int] = mapped_column(Integer, default=60)
    max_live_calls: Mapped[int] = mapped_column(Integer, default=100)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
