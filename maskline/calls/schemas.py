"""The call object (SPEC §3) in the seed's shapes."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from maskline.kit.clock import rfc3339
from maskline.kit.money import paise_to_rupees
from maskline.kit.pagination import PageMeta


def _whole_seconds(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None:
        return 0
    return max(0, math.floor((end - start).total_seconds()))


class CallOut(BaseModel):
    call_sid: str
    id: str
    status: str
    party_a: str
    party_b: str
    masked_number: str
    caller_number: str
    target_number: str
    direction: str = "click_to_call"
    created_at: str | None
    started_at: str | None
    answered_at: str | None
    bridged_at: str | None
    ended_at: str | None
    duration_sec: int
    talk_duration_sec: int
    bill_duration_sec: int
    price: int | float
    currency: str = "INR"
    max_duration_sec: int | None
    ring_timeout_sec: int
    record: bool
    webhook_url: str | None
    metadata: dict[str, str] | None
    hangup_cause: str | None
    hangup_by: str | None
    failed_leg: str | None
    sip_code: int | None
    recording_status: str
    recording_url: str | None = Field(
        description="The API URL of the recording resource, from the bridge of a recorded "
        "call (it answers 404 until recording_status is ready), else null."
    )

    @classmethod
    def build(cls, call: CallFields, *, public_url: str) -> CallOut:
        # The fields come out of call_data as they are stored: nothing to validate.
        return cls.model_construct(**call_data(call, public_url=public_url))


class CallFields(Protocol):
    """What the call object is made of: a ``Call`` row, or a new call's values before
    its row exists (``repository.new_call``)."""

    call_sid: str
    status: str
    party_a: str
    party_b: str
    masked_number: str
    created_at: datetime
    started_at: datetime | None
    answered_at: datetime | None
    bridged_at: datetime | None
    ended_at: datetime | None
    billed_pulses: int
    pulse_sec: int
    price_paise: int
    max_duration_sec: int | None
    ring_timeout_sec: int
    record: bool
    webhook_url: str | None
    call_metadata: dict[str, Any] | None
    hangup_cause: str | None
    hangup_by: str | None
    failed_leg: str | None
    sip_code: int | None
    recording_status: str


def call_data(call: CallFields, *, public_url: str) -> dict[str, Any]:
    """The call object (SPEC §3) as JSON values, in ``CallOut``'s field order: what a
    response and every webhook carry. Made without a model (a model built and dumped for
    each event cost a call's events about 30 µs each)."""
    recording_url = None
    # Set from the bridge of a recorded call (so call.completed carries it, SPEC §3);
    # it answers 404 until the recording is ready. A deleted recording is "none".
    if call.record and call.bridged_at is not None and call.recording_status != "none":
        recording_url = f"{public_url.rstrip('/')}/v1/masking/calls/{call.call_sid}/recording"
    return {
        "call_sid": call.call_sid,
        "id": call.call_sid,
        "status": call.status,
        "party_a": call.party_a,
        "party_b": call.party_b,
        "masked_number": call.masked_number,
        "caller_number": call.masked_number,
        "target_number": call.party_a,
        "direction": "click_to_call",
        "created_at": rfc3339(call.created_at),
        "started_at": rfc3339(call.started_at),
        "answered_at": rfc3339(call.answered_at),
        "bridged_at": rfc3339(call.bridged_at),
        "ended_at": rfc3339(call.ended_at),
        "duration_sec": _whole_seconds(call.answered_at, call.ended_at),
        "talk_duration_sec": _whole_seconds(call.bridged_at, call.ended_at),
        "bill_duration_sec": call.billed_pulses * call.pulse_sec,
        "price": paise_to_rupees(call.price_paise),
        "currency": "INR",
        "max_duration_sec": call.max_duration_sec,
        "ring_timeout_sec": call.ring_timeout_sec,
        "record": call.record,
        "webhook_url": call.webhook_url,
        "metadata": call.call_metadata,
        "hangup_cause": call.hangup_cause,
        "hangup_by": call.hangup_by,
        "failed_leg": call.failed_leg,
        "sip_code": call.sip_code,
        "recording_status": call.recording_status,
        "recording_url": recording_url,
    }


class _Timed(Protocol):
    @property
    def bridged_at(self) -> datetime | None: ...

    @property
    def ended_at(self) -> datetime | None: ...


def talk_seconds(call: _Timed) -> int | None:
    """Whole seconds bridged, or None when the call never bridged."""
    if call.bridged_at is None or call.ended_at is None:
        return None
    return _whole_seconds(call.bridged_at, call.ended_at)


class CallEnvelope(BaseModel):
    data: CallOut


class CallList(BaseModel):
    data: list[CallOut]
    meta: PageMeta
