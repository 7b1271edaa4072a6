"""Typed results. Unknown fields are kept (``model_extra``), so a newer server breaks nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Call(Model):
    call_sid: str
    id: str | None = None
    party_a: str
    party_b: str
    masked_number: str | None = None
    caller_number: str | None = None
    target_number: str | None = None
    direction: str | None = None
    status: str
    created_at: datetime | None = None
    started_at: datetime | None = None
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    duration_sec: int = 0
    talk_duration_sec: int = 0
    bill_duration_sec: int = 0
    price: float = 0
    currency: str | None = None
    max_duration_sec: int | None = None
    ring_timeout_sec: int | None = None
    record: bool | None = None
    metadata: dict[str, str] | None = None
    hangup_cause: str | None = None
    hangup_by: str | None = None
    failed_leg: str | None = None
    sip_code: int | None = None
    recording_status: str | None = None
    recording_url: str | None = None


class Recording(Model):
    call_sid: str
    url: str
    expires_at: datetime | None = None
    duration_sec: float | None = None
    size_bytes: int
    format: str = "mp3"


class Billing(Model):
    balance: float
    currency: str
    rate_per_minute: float | None = None
    reserved: float | None = None
    available: float | None = None
    minimum_balance: float | None = None
    low_balance: bool | None = None


class Stats(Model):
    total_calls: int
    completed: int | None = None
    failed: int | None = None
    no_answer: int | None = None
    daily: list[dict[str, Any]] = []


class Invoice(Model):
    id: str


class Delivery(Model):
    id: str
    event_id: str | None = None
    event: str | None = None
    call_sid: str | None = None
    url: str | None = None
    status: str
    attempts: int = 0


class Event(Model):
    id: str | None = None
    event: str
    call_sid: str | None = None
    created_at: datetime | None = None
    sequence: int | None = None
    cursor: str | None = None
    data: dict[str, Any] = {}
