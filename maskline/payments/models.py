from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from maskline.kit.db import Base, UTCDateTime

TOPUP_STATUSES = ("created", "paid", "expired", "flagged")


class TopUp(Base):
    """A Razorpay order for a top-up of ``amount`` paise (GST on top, SPEC §13).

    ``status`` moves from ``created`` (or ``expired``) to ``paid`` or ``flagged`` by one
    conditional UPDATE, which is what makes a payment's credit happen exactly once.
    """

    __tablename__ = "topups"
    __table_args__ = (
        CheckConstraint("status IN ('created', 'paid', 'expired', 'flagged')", name="status_known"),
        CheckConstraint("refunded >= 0 AND refunded <= amount", name="refunded_within_amount"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    # Credited to the wallet (before GST) and charged (with GST), in paise.
    amount: Mapped[int] = mapped_column(BigInteger)
    order_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    payment_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    invoice_id: Mapped[str | None] = mapped_column(String(32))
    # What refunds have taken back of ``amount`` (before GST).
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    flag_reason: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CreditNoteCounter(Base):
    """Gapless credit note numbers: one counter per financial year."""

    __tablename__ = "credit_note_counters"

    financial_year: Mapped[str] = mapped_column(String(4), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class CreditNote(Base):
    """A GST credit note against a top-up's invoice, for one processed Razorpay refund."""

    __tablename__ = "credit_notes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    credit_note_number: Mapped[str] = mapped_column(String(20), unique=True)
    credit_note_date: Mapped[str] = mapped_column(String(10))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"))
    topup_id: Mapped[str] = mapped_column(ForeignKey("topups.id"))
    refund_id: Mapped[str] = mapped_column(String(64), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    cgst: Mapped[int] = mapped_column(BigInteger)
    sgst: Mapped[int] = mapped_column(BigInteger)
    igst: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    # Of ``amount``, what the wallet could not give back (it had been spent): for the operator.
    shortfall: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
