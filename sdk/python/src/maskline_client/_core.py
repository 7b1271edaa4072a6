"""What the sync and async clients share: building requests, reading answers, retry policy."""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from maskline_client.errors import error_from

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_RETRY_AFTER = 60.0
USER_AGENT = "maskline-client-python/0.1.0"


@dataclass(frozen=True)
class Spec:
    """One API request. ``safe``: repeating it cannot do anything twice (GET, or a POST
    carrying an Idempotency-Key), so connection errors and 5xx may be retried."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    safe: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = MAX_RETRY_AFTER

    def backoff_for(self, attempt: int) -> float:
        """Exponential backoff with full jitter; ``attempt`` counts from 0."""
        ceiling: float = min(self.max_backoff, self.backoff * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def wait_after(self, attempt: int, spec: Spec, response: httpx.Response) -> float | None:
        """Seconds to wait before trying ``spec`` again after ``response``, or None."""
        if attempt >= self.retries:
            return None
        if response.status_code == 429:
            after = retry_after(response)
            if after is None:
                return self.backoff_for(attempt)
            return after if after <= self.max_retry_after else None
        if response.status_code >= 500 and spec.safe:
            after = retry_after(response) if response.status_code == 503 else None
            return min(after, self.max_retry_after) if after else self.backoff_for(attempt)
        return None

    def wait_after_error(self, attempt: int, spec: Spec) -> float | None:
        if attempt >= self.retries or not spec.safe:
            return None
        return self.backoff_for(attempt)


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def headers_for(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}


def data_of(response: httpx.Response) -> Any:
    """The ``data`` of a success, or raises the error's exception."""
    if response.status_code >= 400:
        raise error_from(response)
    if response.status_code == 204 or not response.content:
        return None
    body = response.json()
    return body.get("data") if isinstance(body, dict) else body


def page_of(response: httpx.Response) -> tuple[list[Any], dict[str, Any]]:
    if response.status_code >= 400:
        raise error_from(response)
    body = response.json()
    return list(body.get("data") or []), dict(body.get("meta") or {})


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def create_call(
    party_a: str,
    party_b: str,
    *,
    max_duration_sec: int | None = None,
    record: bool | None = None,
    ring_timeout_sec: int | None = None,
    webhook_url: str | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> Spec:
    body = _drop_none(
        {
            "party_a": party_a,
            "party_b": party_b,
            "max_duration_sec": max_duration_sec,
            "record": record,
            "ring_timeout_sec": ring_timeout_sec,
            "webhook_url": webhook_url,
            "metadata": metadata,
        }
    )
    key = idempotency_key or str(uuid.uuid4())
    return Spec("POST", "/v1/masking/calls", json=body, headers={"Idempotency-Key": key}, safe=True)


def get(path: str, **params: Any) -> Spec:
    return Spec("GET", path, params=_drop_none(params), safe=True)


def next_page_params(
    params: dict[str, Any], meta: dict[str, Any], got: int
) -> dict[str, Any] | None:
    """The query of the page after the one ``meta`` describes: by ``next_cursor`` when
    the server gives one, else by ``page`` (servers written before cursors)."""
    if "next_cursor" in meta:
        cursor = meta["next_cursor"]
        if not cursor:
            return None
        following = {k: v for k, v in params.items() if k != "page"}
        following["cursor"] = cursor
        return following
    if not got or not meta.get("has_more", False):
        return None
    return {**params, "page": int(meta.get("page", params.get("page", 1))) + 1}


def range_header(have: int) -> dict[str, str]:
    return {"Range": f"bytes={have}-"} if have else {}
