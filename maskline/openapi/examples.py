"""The examples of the OpenAPI document: one masked call, followed from its creation to
its recording, its webhook deliveries and the wallet it was billed from. The values are
in the product's formats (UUID v4 call ids, 12-digit masked numbers, 10-digit parties,
``evt_``/``dlv_``/``inv_``/``org_`` ids, RFC 3339 UTC times, rupees) and agree with each
other: the call that talked 94 s bills 2 pulses, Rs 3 at Rs 1.50 a minute."""

from __future__ import annotations

from typing import Any

CALL_SID = "d28be7cd-9840-4b23-9627-199f1ef81fc6"
PUBLIC_URL = "https://voice.example.in"
PARTY_A = "9876543210"
PARTY_B = "9123456789"
MASKED = "917969002802"
ORG_ID = "org_l1MsCcyKA7GuYMF1KQpf"
INVOICE_ID = "inv_NsTnrWYjSfUGZ4eUfDbH"
DELIVERY_ID = "dlv_vrV0n9UDAiHgwF8VeszF"
EVENT_ID = "evt_Q2xq8bH1m0d4KfVn3Tz7"
SIGNATURE = "4f5958b59424b0d10f5fa86da2a8fa436c3fd6033b496fad0441f1b81ea1fb37"
EXPIRES = 1778491902  # 2026-05-11T09:31:42Z, an hour after the URL was signed
CURSOR = "WzEsMTc3ODQ4ODE5OTAwMDAwMCwiZDI4YmU3Y2QiLCI3NjIwNDE0YmY1MmYxMDcyIl0"

CALL_INITIATED: dict[str, Any] = {
    "call_sid": CALL_SID,
    "id": CALL_SID,
    "status": "initiated",
    "party_a": PARTY_A,
    "party_b": PARTY_B,
    "masked_number": MASKED,
    "caller_number": MASKED,
    "target_number": PARTY_A,
    "direction": "click_to_call",
    "created_at": "2026-05-11T08:29:59Z",
    "started_at": None,
    "answered_at": None,
    "bridged_at": None,
    "ended_at": None,
    "duration_sec": 0,
    "talk_duration_sec": 0,
    "bill_duration_sec": 0,
    "price": 0,
    "currency": "INR",
    "max_duration_sec": None,
    "ring_timeout_sec": 30,
    "record": True,
    "webhook_url": None,
    "metadata": {"order_id": "A-17"},
    "hangup_cause": None,
    "hangup_by": None,
    "failed_leg": None,
    "sip_code": None,
    "recording_status": "pending",
    "recording_url": None,
}
CALL_COMPLETED: dict[str, Any] = {
    **CALL_INITIATED,
    "status": "completed",
    "started_at": "2026-05-11T08:30:00Z",
    "answered_at": "2026-05-11T08:30:08Z",
    "bridged_at": "2026-05-11T08:30:10Z",
    "ended_at": "2026-05-11T08:31:44Z",
    "duration_sec": 96,
    "talk_duration_sec": 94,
    "bill_duration_sec": 120,
    "price": 3,
    "hangup_cause": "NORMAL_CLEARING",
    "hangup_by": "party_b",
    "recording_status": "ready",
    "recording_url": f"{PUBLIC_URL}/v1/masking/calls/{CALL_SID}/recording",
}
PAGE_META: dict[str, Any] = {
    "page": 1,
    "per_page": 20,
    "total": 1,
    "total_pages": 1,
    "has_more": False,
    "next_cursor": None,
    "total_capped": False,
}
RECORDING: dict[str, Any] = {
    "call_sid": CALL_SID,
    "url": f"{PUBLIC_URL}/v1/masking/recordings/{CALL_SID}.mp3"
    f"?expires={EXPIRES}&signature={SIGNATURE}",
    "expires_at": "2026-05-11T09:31:42Z",
    "duration_sec": 94,
    "size_bytes": 376044,
    "format": "mp3",
}
BILLING: dict[str, Any] = {
    "balance": 497,
    "currency": "INR",
    "rate_per_minute": 1.5,
    "reserved": 1.5,
    "available": 495.5,
    "minimum_balance": 1.5,
    "low_balance": False,
}
INVOICE: dict[str, Any] = {
    "id": INVOICE_ID,
    "invoice_number": "ML/2627/000001",
    "invoice_date": "2026-05-11",
    "supplier_name": "Example Voice Pvt Ltd",
    "supplier_address": "4th Floor, Example House, Ahmedabad 380015",
    "supplier_gstin": "24AAPFU0939F1ZP",
    "org_id": ORG_ID,
    "recipient_name": "Acme Deliveries",
    "gstin": "27AAPFU0939F1ZV",
    "place_of_supply": "27",
    "sac": "9984",
    "description": "Prepaid wallet top-up for number masking voice calls",
    "amount": 1000,
    "cgst": 0,
    "sgst": 0,
    "igst": 180,
    "total": 1180,
    "currency": "INR",
    "reference": "pay_Q2xq8bH1m0d4Kf",
    "created_at": "2026-05-11T08:00:05Z",
}
STATS: dict[str, Any] = {
    "start_date": "2026-05-09T18:30:00Z",
    "end_date": "2026-05-11T18:29:59Z",
    "total_sessions": 2,
    "active_sessions": 0,
    "total_mappings": 1,
    "total_calls": 2,
    "total_minutes": 1.57,
    "total_cost": 3,
    "answered_calls": 2,
    "failed_calls": 1,
    "completed": 1,
    "failed": 1,
    "no_answer": 0,
    "in_progress": 0,
    "answer_rate": 1.0,
    "bridge_rate": 0.5,
    "billed_minutes": 2.0,
    "average_talk_sec": 94.0,
    "daily": [
        {"date": "2026-05-10", "calls": 0, "completed": 0, "billed_minutes": 0.0, "cost": 0},
        {"date": "2026-05-11", "calls": 2, "completed": 1, "billed_minutes": 2.0, "cost": 3},
    ],
}
DELIVERY: dict[str, Any] = {
    "id": DELIVERY_ID,
    "event_id": EVENT_ID,
    "event": "call.completed",
    "call_sid": CALL_SID,
    "url": "https://hooks.acme.example/maskline",
    "status": "failed",
    "attempts": 8,
    "next_attempt_at": None,
    "last_status_code": 502,
    "last_error": "HTTP 502",
    "created_at": "2026-05-11T08:31:44Z",
    "succeeded_at": None,
}
EVENT: dict[str, Any] = {
    "cursor": "41",
    "id": EVENT_ID,
    "event": "call.completed",
    "call_sid": CALL_SID,
    "created_at": "2026-05-11T08:31:44Z",
    "sequence": 5,
    "data": CALL_COMPLETED,
}

# The example of each response body, by its schema in the components.
SCHEMA_EXAMPLES: dict[str, Any] = {
    "CallEnvelope": {"data": CALL_COMPLETED},
    "CallList": {"data": [CALL_COMPLETED], "meta": {**PAGE_META, "has_more": False}},
    "RecordingEnvelope": {"data": RECORDING},
    "StatsEnvelope": {"data": STATS},
    "BillingEnvelope": {"data": BILLING},
    "InvoiceList": {"data": [INVOICE], "meta": PAGE_META},
    "DeliveryList": {
        "data": [DELIVERY],
        "meta": {
            **PAGE_META,
            "per_page": 1,
            "total": 6,
            "total_pages": 6,
            "has_more": True,
            "next_cursor": CURSOR,
        },
    },
    "DeliveryEnvelope": {
        "data": {
            **DELIVERY,
            "status": "pending",
            "next_attempt_at": "2026-05-11T10:02:13Z",
        }
    },
    "FeedPage": {"data": [EVENT], "meta": {"next_cursor": "41", "has_more": False}},
    "WebhookAck": {"data": {"outcome": "credited"}},
    "NewCall": {
        "party_a": PARTY_A,
        "party_b": PARTY_B,
        "max_duration_sec": 600,
        "record": True,
        "ring_timeout_sec": 30,
        "webhook_url": "https://hooks.acme.example/maskline",
        "metadata": {"order_id": "A-17"},
    },
}

# Where an operation's answer differs from its schema's example: (method, path, status).
OPERATION_EXAMPLES: dict[tuple[str, str, str], Any] = {
    ("post", "/v1/masking/calls", "201"): {"data": CALL_INITIATED},
    ("get", "/healthz", "200"): {"status": "ok"},
    ("get", "/readyz", "200"): {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "carrier": "ok"},
    },
    ("get", "/readyz", "503"): {
        "status": "not_ready",
        "checks": {"database": "ok", "migrations": "behind (0012)", "carrier": "ok"},
    },
    ("get", "/metrics", "200"): (
        "# HELP maskline_live_calls Calls not yet ended.\n"
        "# TYPE maskline_live_calls gauge\n"
        "maskline_live_calls 3.0\n"
    ),
}

# Razorpay's webhook body (its own format), for the one body the API reads raw.
RAZORPAY_EVENT: dict[str, Any] = {
    "event": "payment.captured",
    "payload": {
        "payment": {
            "entity": {
                "id": "pay_Q2xq8bH1m0d4Kf",
                "order_id": "order_Q2xq5sR0kJ3mNp",
                "amount": 118000,
                "currency": "INR",
                "status": "captured",
            }
        }
    },
}

# Every parameter of that name, wherever it appears.
PARAMETER_EXAMPLES: dict[str, Any] = {
    "call_sid": CALL_SID,
    "invoice_id": INVOICE_ID,
    "delivery_id": DELIVERY_ID,
    "status": "completed",
    "party": PARTY_A,
    "page": 1,
    "per_page": 20,
    "cursor": CURSOR,
    "start_date": "2026-05-10",
    "end_date": "2026-05-11",
    "from": "2026-05-10",
    "to": "2026-05-11",
    "event": "call.completed",
    "after": "40",
    "limit": 100,
    "expires": str(EXPIRES),
    "signature": SIGNATURE,
    "Idempotency-Key": "order-A-17-call-1",
    "authorization": "Bearer 3c1f9e0a7b5d4c2e8f6a1b0d9c7e5f3a",
}

# Where a parameter of that name means something else: (path, name).
OPERATION_PARAMETER_EXAMPLES: dict[tuple[str, str], Any] = {
    ("/v1/webhooks/deliveries", "status"): "failed",
}

# The message of each error code where the operation does not say otherwise.
ERROR_MESSAGES: dict[str, str] = {
    "invalid_numbers": "party_b must be a 10-digit Indian mobile number.",
    # Any keyed request: a query parameter given twice (the first one the operation takes).
    "invalid_request": "{parameter} must be given once.",
    "unauthorized": "The API key is not valid.",
    "insufficient_balance": "Insufficient balance. Please add funds to continue making calls.",
    "forbidden": "This recording URL is expired or not valid.",
    "not_found": "No such resource: check the path.",
    "method_not_allowed": "PUT is not allowed on this resource.",
    "idempotency_conflict": "This Idempotency-Key was already used with a different request body.",
    "payload_too_large": "The request body is larger than 64 KiB.",
    "range_not_satisfiable": "The requested range is outside the file.",
    "rate_limited": "Rate limit exceeded. Please retry after the time in Retry-After.",
    "internal_error": "An internal error occurred (request id 7Rk2mQ9xWb3nLp4s).",
    "no_masked_number": "No masked number is free for these parties. Please retry shortly.",
}
REQUEST_ID = "7Rk2mQ9xWb3nLp4s"

# Messages particular to an operation: (method, path, code).
OPERATION_ERROR_MESSAGES: dict[tuple[str, str, str], str] = {
    ("post", "/v1/masking/calls", "invalid_numbers"): (
        "Party A and Party B cannot be the same number."
    ),
    ("post", "/v1/masking/calls", "invalid_request"): (
        "max_duration_sec must be an integer from 10 to 7200."
    ),
    ("post", "/v1/masking/calls", "rate_limited"): "Too many live calls for this organisation.",
    ("get", "/v1/masking/call-logs", "invalid_request"): (
        "Use cursor to page beyond the first 10,000 calls."
    ),
    ("get", "/v1/masking/stats", "invalid_request"): (
        "The range from start_date to end_date must be at most 366 days."
    ),
    ("get", "/v1/events", "invalid_request"): "after is not a cursor of this event feed.",
    ("post", "/v1/payments/razorpay/webhook", "invalid_request"): (
        "X-Razorpay-Signature does not match the body."
    ),
    ("get", "/v1/masking/calls/{call_sid}", "not_found"): "No call with this call_sid.",
    ("post", "/v1/masking/calls/{call_sid}/hangup", "not_found"): "No call with this call_sid.",
    ("get", "/v1/masking/calls/{call_sid}/recording", "not_found"): (
        "This call has no recording ready."
    ),
    ("delete", "/v1/masking/calls/{call_sid}/recording", "not_found"): (
        "This call has no recording to delete."
    ),
    ("get", "/v1/masking/recordings/{call_sid}.mp3", "not_found"): (
        "This call has no recording ready."
    ),
    ("get", "/v1/masking/billing/invoices/{invoice_id}.pdf", "not_found"): (
        "No invoice with this id."
    ),
    ("get", "/metrics", "forbidden"): "The metrics token is missing or wrong.",
}
