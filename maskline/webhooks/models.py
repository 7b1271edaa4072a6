from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from maskline.kit.db import Base, UTCDateTime


class WebhookEndpoint(Base):
    """The organisation's endpoint and its signing secret (encrypted at rest)."""

    __tablename__ = "webhook_endpoints"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    url: Mapped[str | None] = mapped_column(Text)
    secret_enc: Mapped[str] = mapped_column(Text)
    secret_prefix: Mapped[str] = mapped_column(String(16))
    previous_secret_enc: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CallEvent(Base):
    """The outbox: one row per state change, written in the change's own transaction.

    ``payload`` holds the exact bytes every delivery sends (SPEC §6).
    """

    __tablename__ = "call_events"
    __table_args__ = (
        UniqueConstraint("call_sid", "sequence"),
        UniqueConstraint("org_id", "cursor"),
        # The events the feed has yet to number, in the order it numbers them.
        Index(
            "ix_call_events_waiting_for_cursor",
            "created_at",
            "call_sid",
            "sequence",
            postgresql_where=text("cursor IS NULL"),
            sqlite_where=text("cursor IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    call_sid: Mapped[str | None] = mapped_column(String(36))
    sequence: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The position in the organisation's event feed, given after commit by one writer.
    cursor: Mapped[int | None] = mapped_column(BigInteger)


class EventFeedCounter(Base):
    """The last feed cursor given out, per organisation."""

    __tablename__ = "event_feed_counters"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    last_cursor: Mapped[int] = mapped_column(BigInteger)


class WebhookDelivery(Base):
    """One event to one URL: its attempts, its schedule and its outcome."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The worker's claim: due deliveries in (next_attempt_at, sequence) order, read
        # in that order (migration 0015), the URL tested on the index entry (0016).
        Index("ix_webhook_deliveries_due_lane", "status", "next_attempt_at", "sequence", "url"),
        Index("ix_webhook_deliveries_org_created", "org_id", "created_at"),
        Index("ix_webhook_deliveries_call_url", "call_sid", "url", "sequence"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    event_id: Mapped[str] = mapped_column(ForeignKey("call_events.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    call_sid: Mapped[str | None] = mapped_column(String(36))
    sequence: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    # True when the URL is the organisation's endpoint (a 410 pauses that endpoint).
    to_endpoint: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
