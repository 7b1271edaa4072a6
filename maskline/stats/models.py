"""What usage statistics keep of calls that retention deleted (SPEC §3, §10)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from maskline.kit.db import Base


class CallDayRollup(Base):
    """The figures of an organisation's deleted calls, per Asia/Kolkata day of creation.

    Written in the transaction that deletes the calls, added to what is already there,
    so ``GET /v1/masking/stats`` answers for deleted days as it did before.
    """

    __tablename__ = "call_day_rollups"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)
    answered: Mapped[int] = mapped_column(Integer)
    bridged: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    no_answer: Mapped[int] = mapped_column(Integer)
    talk_sec: Mapped[int] = mapped_column(BigInteger)
    bridged_talk_sec: Mapped[int] = mapped_column(BigInteger)
    billed_sec: Mapped[int] = mapped_column(BigInteger)
    price_paise: Mapped[int] = mapped_column(BigInteger)


class CallDayPair(Base):
    """Each A–B pair (a keyed digest, never the numbers) of a day's deleted calls, so
    ``total_mappings`` still counts distinct pairs across days."""

    __tablename__ = "call_day_pairs"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    pair: Mapped[str] = mapped_column(String(32), primary_key=True)
