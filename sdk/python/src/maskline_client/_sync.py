"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from maskline_client import _core
from maskline_client.errors import MasklineError, error_from
from maskline_client.models import Billing, Call, Delivery, Event, Invoice, Recording, Stats


class Client:
    """``Client(api_key, base_url)``: any maskline or Edesy-compatible base URL."""

    def __init__(
        self,
        api_key: str,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float | httpx.Timeout = _core.DEFAULT_TIMEOUT,
        retry: _core.RetryPolicy | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._headers = _core.headers_for(api_key)
        self._retry = retry or _core.RetryPolicy()
        self.calls = Calls(self)
        self.recordings = Recordings(self)
        self.invoices = Invoices(self)
        self.deliveries = Deliveries(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, spec: _core.Spec) -> httpx.Response:
        """``spec`` sent, retried as the policy allows; the final response."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    spec.method,
                    spec.path,
                    params=spec.params,
                    json=spec.json,
                    headers={**self._headers, **spec.headers},
                )
            except httpx.TransportError:
                wait = self._retry.wait_after_error(attempt, spec)
                if wait is None:
                    raise
            else:
                wait = self._retry.wait_after(attempt, spec, response)
                if wait is None:
                    return response
            time.sleep(wait)
            attempt += 1

    def data(self, spec: _core.Spec) -> Any:
        return _core.data_of(self.send(spec))

    def pages(self, path: str, params: dict[str, Any]) -> Iterator[Any]:
        query: dict[str, Any] | None = {k: v for k, v in params.items() if v is not None}
        while query is not None:
            items, meta = _core.page_of(self.send(_core.Spec("GET", path, query, safe=True)))
            yield from items
            query = _core.next_page_params(query, meta, len(items))

    def stats(self, *, start_date: str | None = None, end_date: str | None = None) -> Stats:
        spec = _core.get("/v1/masking/stats", start_date=start_date, end_date=end_date)
        return Stats.model_validate(self.data(spec))

    def billing(self) -> Billing:
        return Billing.model_validate(self.data(_core.get("/v1/masking/billing")))

    def events(self, *, after: str | None = None, limit: int = 100) -> Iterator[Event]:
        """The organisation's events in order, from after ``after``, until the feed's end."""
        while True:
            spec = _core.get("/v1/events", after=after, limit=limit)
            items, meta = _core.page_of(self.send(spec))
            for item in items:
                yield Event.model_validate(item)
            after = meta.get("next_cursor") or after
            if not meta.get("has_more") or not items:
                return


class Calls:
    def __init__(self, client: Client) -> None:
        self._c = client

    def create(
        self,
        party_a: str,
        party_b: str,
        *,
        max_duration_sec: int | None = None,
        record: bool | None = None,
        ring_timeout_sec: int | None = None,
        webhook_url: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Call:
        spec = _core.create_call(
            party_a,
            party_b,
            max_duration_sec=max_duration_sec,
            record=record,
            ring_timeout_sec=ring_timeout_sec,
            webhook_url=webhook_url,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        return Call.model_validate(self._c.data(spec))

    def get(self, call_sid: str) -> Call:
        return Call.model_validate(self._c.data(_core.get(f"/v1/masking/calls/{call_sid}")))

    def hangup(self, call_sid: str) -> Call:
        # Hang-up is idempotent (SPEC §3), so it is safe to repeat.
        spec = _core.Spec("POST", f"/v1/masking/calls/{call_sid}/hangup", safe=True)
        return Call.model_validate(self._c.data(spec))

    def list(
        self,
        *,
        status: str | None = None,
        start_date: str | None = None,
        end_date: str | None = None,
        party: str | None = None,
        per_page: int = 100,
    ) -> Iterator[Call]:
        params = {
            "status": status,
            "start_date": start_date,
            "end_date": end_date,
            "party": party,
            "per_page": per_page,
        }
        for item in self._c.pages("/v1/masking/call-logs", params):
            yield Call.model_validate(item)


class Recordings:
    def __init__(self, client: Client) -> None:
        self._c = client

    def get(self, call_sid: str) -> Recording:
        spec = _core.get(f"/v1/masking/calls/{call_sid}/recording")
        return Recording.model_validate(self._c.data(spec))

    def delete(self, call_sid: str) -> None:
        self._c.data(_core.Spec("DELETE", f"/v1/masking/calls/{call_sid}/recording", safe=True))

    def download(self, call_sid: str, path: str | Path, *, attempts: int = 5) -> Recording:
        """The recording written to ``path``; a dropped connection resumes with ``Range``."""
        recording = self.get(call_sid)
        target = Path(path)
        target.write_bytes(b"")
        for attempt in range(attempts):
            have = target.stat().st_size
            if have >= recording.size_bytes:
                break
            try:
                with (
                    self._c._http.stream(
                        "GET", recording.url, headers=_core.range_header(have)
                    ) as response,
                    target.open("ab" if response.status_code == 206 else "wb") as out,
                ):
                    if response.status_code >= 400:
                        response.read()
                        raise error_from(response)
                    for chunk in response.iter_bytes():
                        out.write(chunk)
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
                time.sleep(self._c._retry.backoff_for(attempt))
        if target.stat().st_size != recording.size_bytes:
            raise MasklineError(0, "incomplete_download", f"Got {target.stat().st_size} bytes.")
        return recording


class Invoices:
    def __init__(self, client: Client) -> None:
        self._c = client

    def list(self, *, per_page: int = 100) -> Iterator[Invoice]:
        for item in self._c.pages("/v1/masking/billing/invoices", {"per_page": per_page}):
            yield Invoice.model_validate(item)

    def pdf(self, invoice_id: str) -> bytes:
        response = self._c.send(_core.get(f"/v1/masking/billing/invoices/{invoice_id}.pdf"))
        if response.status_code >= 400:
            raise error_from(response)
        return response.content


class Deliveries:
    def __init__(self, client: Client) -> None:
        self._c = client

    def list(
        self,
        *,
        status: str | None = None,
        call_sid: str | None = None,
        event: str | None = None,
        per_page: int = 100,
    ) -> Iterator[Delivery]:
        params = {"status": status, "call_sid": call_sid, "event": event, "per_page": per_page}
        for item in self._c.pages("/v1/webhooks/deliveries", params):
            yield Delivery.model_validate(item)

    def replay(self, delivery_id: str) -> None:
        spec = _core.Spec("POST", f"/v1/webhooks/deliveries/{delivery_id}/replay", safe=True)
        self._c.data(spec)
