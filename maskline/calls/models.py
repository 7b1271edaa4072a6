from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from maskline.kit.db import Base, UTCDateTime

LIVE_STATUSES = ("initiated", "ringing", "answered", "in-progress")
TERMINAL_STATUSES = ("completed", "failed", "no-answer")


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_org_created", "org_id", "created_at", "id"),
        Index("ix_calls_status_engine", "status", "engine_id"),
        # Each call-logs filter reads its rows in the list's order (created_at, id).
        Index("ix_calls_org_status_created", "org_id", "status", "created_at", "id"),
        Index("ix_calls_org_party_a", "org_id", "party_a", "created_at", "id"),
        Index("ix_calls_org_party_b", "org_id", "party_b", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    call_sid: Mapped[str] = mapped_column(String(36), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    carrier: Mapped[str] = mapped_column(String(8))
    party_a: Mapped[str] = mapped_column(String(10))
    party_b: Mapped[str] = mapped_column(String(10))
    masked_number: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(16))
    hangup_cause: Mapped[str | None] = mapped_column(String(32))
    hangup_by: Mapped[str | None] = mapped_column(String(8))
    failed_leg: Mapped[str | None] = mapped_column(String(8))
    sip_code: Mapped[int | None] = mapped_column(Integer)

    max_duration_sec: Mapped[int | None] = mapped_column(Integer)
    ring_timeout_sec: Mapped[int] = mapped_column(Integer)
    record: Mapped[bool] = mapped_column(Boolean)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    call_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bridged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Money: the price is fixed at acceptance; the hold is what the wallet reserves for the call.
    rate_paise: Mapped[int] = mapped_column(Integer)
    pulse_sec: Mapped[int] = mapped_column(Integer)
    pulse_price_paise: Mapped[int] = mapped_column(Integer)
    hold_paise: Mapped[int] = mapped_column(BigInteger)
    granted_pulses: Mapped[int] = mapped_column(Integer, default=0)
    billed_pulses: Mapped[int] = mapped_column(Integer, default=0)
    price_paise: Mapped[int] = mapped_column(BigInteger, default=0)
    # Whole seconds bridged, set when the call ends (for usage statistics).
    talk_sec: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    recording_status: Mapped[str] = mapped_column(String(8))
    event_seq: Mapped[int] = mapped_column(Integer, default=0)

    # Ownership by a call engine: a lease renewed by heartbeats (ARCHITECTURE §4).
    engine_id: Mapped[str | None] = mapped_column(String(40))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hangup_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Each answered SIP leg's dialog ({"party_a": Dialog.to_json(), ...}), so that any
    # engine can send BYE for the call if its own engine dies (SPEC §8).
    sip_dialogs: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class CallCount(Base):
    """How many calls an organisation has stored (the unfiltered call-logs ``total``):
    counted with each new call in the batch that inserts it, less those retention
    deleted."""

    __tablename__ = "call_counts"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    # The count is the sum over its shards: a batch adds to the shard it drew, so that
    # concurrent batches rarely wait on one another (``calls/tally.py``).
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="0")
    calls: Mapped[int] = mapped_column(BigInteger)
    # The first Asia/Kolkata day whose calls' pairs are all in ``CallDayPairs`` (null:
    # every day; set by the migration that began the tally, for the calls before it, on
    # shard 0).
    pairs_from: Mapped[date | None] = mapped_column(Date)


class CallDayTally(Base):
    """The figures of an organisation's ended calls per Asia/Kolkata day of creation,
    added as each call ends, in the batch that ends it; never deleted (usage statistics
    outlive the calls)."""

    __tablename__ = "call_day_tallies"

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


class CallPair(Base):
    """Each A–B pair of an organisation (a keyed digest, never the numbers) with the
    last two Asia/Kolkata days it was called on."""

    __tablename__ = "call_pairs"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    pair: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_day: Mapped[date] = mapped_column(Date)
    prev_day: Mapped[date | None] = mapped_column(Date)


class CallDayPairs(Base):
    """How many pairs were called on ``day`` whose previous call was on ``since``
    (``NEVER`` for a first call). The distinct pairs of the days ``d1``…``d2`` are the
    sum over those days with ``since < d1``: each pair counts once, on its first day in
    the range."""

    __tablename__ = "call_day_pairs_since"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    since: Mapped[date] = mapped_column(Date, primary_key=True)
    # Summed over shards, as ``CallCount``'s.
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="0")
    pairs: Mapped[int] = mapped_column(Integer)
