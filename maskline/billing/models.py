from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from maskline.kit.db import Base, UTCDateTime


class Wallet(Base):
    """One row per organisation; changed only by conditional updates (SPEC §4)."""

    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_non_negative"),
        CheckConstraint("reserved >= 0", name="reserved_non_negative"),
        CheckConstraint("reserved <= balance", name="reserved_within_balance"),
        CheckConstraint("live_calls >= 0", name="live_calls_non_negative"),
    )

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    # Calls accepted and not yet ended: the live-call cap, kept beside the hold it goes
    # with so that one conditional statement checks and takes both (SPEC §4, §7).
    live_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerEntry(Base):
    """Append-only: the wallet balance always equals the sum of ``amount``."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_org_id_id", "org_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str | None] = mapped_column(String(200))
    call_sid: Mapped[str | None] = mapped_column(String(36))
    invoice_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InvoiceCounter(Base):
    """Gapless invoice numbers: one counter per financial year, bumped by each top-up."""

    __tablename__ = "invoice_counters"

    financial_year: Mapped[str] = mapped_column(String(4), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class Invoice(Base):
    __tablename__ = "invoices"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    invoice_number: Mapped[str] = mapped_column(String(16), unique=True)
    invoice_date: Mapped[str] = mapped_column(String(10))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    supplier_name: Mapped[str | None] = mapped_column(String(200))
    supplier_address: Mapped[str | None] = mapped_column(String(500))
    supplier_gstin: Mapped[str | None] = mapped_column(String(15))
    recipient_name: Mapped[str] = mapped_column(String(100))
    recipient_address: Mapped[str | None] = mapped_column(String(500))
    gstin: Mapped[str | None] = mapped_column(String(15))
    place_of_supply: Mapped[str] = mapped_column(String(2))
    sac: Mapped[str] = mapped_column(String(10))
    description: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int] = mapped_column(BigInteger)
    cgst: Mapped[int] = mapped_column(BigInteger)
    sgst: Mapped[int] = mapped_column(BigInteger)
    igst: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
