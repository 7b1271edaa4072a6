"""The Python client library (sdk/python) against a real ``maskline serve``."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from maskline_client import (
    BY_CODE,
    AsyncClient,
    Client,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidNumbers,
    InvalidRequest,
    MasklineError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    RateLimited,
    RetryPolicy,
    Unauthorized,
    WebhookVerificationError,
    verify_webhook,
)
from maskline_client._core import Spec
from maskline_client.errors import error_from

from tests.sdk.proxy import dropping_proxy
from tests.sdk.stack import Stack, sdk_stack
from tests.support.databases import fresh_database
from tests.support.receiver import Receiver
from tests.support.waits import eventually_blocking, eventually_value

README = Path(__file__).parents[2] / "sdk" / "python" / "README.md"
_numbers = itertools.count(1)
# The stack is a ``maskline serve`` process (tests/sdk/stack.py).
pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("sdk")
    # A database of its own (tests/sdk/stack.py).
    with fresh_database(tmp) as database_url, sdk_stack(database_url, tmp) as started:
        yield started


def _ended(client: Client, call_sid: str) -> Any:
    return eventually_blocking(
        lambda: client.calls.get(call_sid),
        lambda call: (
            call.status in ("completed", "failed", "no-answer")
            and call.recording_status != "pending"
        ),
        what=f"call {call_sid} ended",
        within=30,
    )


def _party(prefix: str, n: int) -> str:
    return f"{prefix}{n:05d}"


class TestCalls:
    def test_a_call_completes_and_its_recording_downloads_resuming_after_a_drop(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        with Client(stack.org(), stack.base_url) as client:
            call = client.calls.create(
                "9876512345", "9123412345", max_duration_sec=60, metadata={"order": "A-17"}
            )
            assert (call.status, call.metadata, call.max_duration_sec) == (
                "initiated",
                {"order": "A-17"},
                60,
            )
            ended = _ended(client, call.call_sid)
            assert (ended.status, ended.hangup_cause, ended.recording_status) == (
                "completed",
                "NORMAL_CLEARING",
                "ready",
            )
            whole = tmp_path / "whole.mp3"
            recording = client.recordings.download(call.call_sid, whole)
            assert whole.stat().st_size == recording.size_bytes
            assert whole.read_bytes()[:2] == b"\xff\xf3"  # MPEG-2 Layer III
            # The next download's connection is cut 1,000 bytes into the answer.
            stack.recordings_proxy.cuts = {stack.recordings_proxy.connections: 1000}
            resumed = tmp_path / "resumed.mp3"
            client.recordings.download(call.call_sid, resumed)
            assert resumed.read_bytes() == whole.read_bytes()
            client.recordings.delete(call.call_sid)
            with pytest.raises(NotFound):
                client.recordings.get(call.call_sid)
            assert client.calls.get(call.call_sid).recording_status == "none"

    def test_a_create_retried_after_a_dropped_connection_places_one_call(
        self, stack: Stack
    ) -> None:
        api_key = stack.org()
        # The first connection reaches the server, which places the call, but its answer
        # never reaches the client.
        with (
            dropping_proxy(stack.port, {0: 0}) as proxy,
            Client(api_key, proxy.url, retry=RetryPolicy(backoff=0.05)) as client,
        ):
            call = client.calls.create("9876523456", "9123423456", record=False)
            assert proxy.connections == 2
            assert [c.call_sid for c in client.calls.list()] == [call.call_sid]

    def test_paging_across_250_calls_returns_each_exactly_once(self, stack: Stack) -> None:
        with Client(stack.org("--max-live-calls", "1000"), stack.base_url) as client:
            # Placed 8 at a time (the client is thread-safe), as a busy integration would.
            with ThreadPoolExecutor(8) as pool:
                placed = set(
                    pool.map(
                        lambda n: (
                            client.calls.create(
                                _party("98765", n), _party("91234", n), record=False
                            ).call_sid
                        ),
                        range(250),
                    )
                )
            assert len(placed) == 250
            listed = [call.call_sid for call in client.calls.list(per_page=100)]
            assert len(listed) == 250
            assert set(listed) == placed

    def test_a_429_is_waited_out_as_retry_after_says(self, stack: Stack) -> None:
        api_key = stack.org("--max-live-calls", "1")
        with Client(api_key, stack.base_url, retry=RetryPolicy(max_retry_after=0)) as impatient:
            first = impatient.calls.create("9876534567", "9123434567", record=False)
            with pytest.raises(RateLimited) as refused:
                impatient.calls.create("9876545678", "9123445678", record=False)
            assert (refused.value.status, refused.value.message) == (
                429,
                "Too many live calls for this organisation.",
            )
        with Client(api_key, stack.base_url) as client:
            second = client.calls.create("9876545678", "9123445678", record=False)
            first_ended = _ended(client, first.call_sid)
            assert second.created_at is not None
            assert first_ended.ended_at is not None
            assert second.created_at >= first_ended.ended_at


class TestAccount:
    def test_hangup_stats_billing_and_invoices(self, stack: Stack) -> None:
        with Client(stack.org(), stack.base_url) as client:
            ringing = client.calls.create("9876540000", "9123490123", ring_timeout_sec=120)
            hung_up = client.calls.hangup(ringing.call_sid)
            assert (hung_up.status, hung_up.hangup_cause, hung_up.hangup_by) == (
                "failed",
                "NORMAL_CLEARING",
                "system",
            )
            assert client.calls.hangup(ringing.call_sid).ended_at == hung_up.ended_at
            stats = client.stats()
            assert (stats.total_calls, stats.failed, stats.completed) == (1, 1, 0)
            billing = client.billing()
            assert (billing.balance, billing.currency, billing.reserved) == (100000, "INR", 0)
            assert list(client.invoices.list()) == []


class TestAsyncClient:
    async def test_the_same_surface_awaited_survives_drops(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        api_key = await asyncio.to_thread(stack.org)
        with dropping_proxy(stack.port, {0: 0}) as proxy:
            async with AsyncClient(api_key, proxy.url, retry=RetryPolicy(backoff=0.05)) as client:
                call = await client.calls.create("9876589012", "9123489012", metadata={"k": "v"})
                assert proxy.connections == 2
                ended = await eventually_value(
                    lambda: client.calls.get(call.call_sid),
                    lambda got: got.status == "completed" and got.recording_status == "ready",
                    what="the call completed with its recording",
                    within=30,
                )
                assert (ended.metadata, ended.bill_duration_sec, ended.price) == (
                    {"k": "v"},
                    60,
                    1.5,
                )
                assert [c.call_sid async for c in client.calls.list()] == [call.call_sid]
                assert (await client.billing()).balance == 99998.5
                whole = tmp_path / "whole.mp3"
                recording = await client.recordings.download(call.call_sid, whole)
                stack.recordings_proxy.cuts = {stack.recordings_proxy.connections: 1000}
                resumed = tmp_path / "resumed.mp3"
                await client.recordings.download(call.call_sid, resumed)
                assert whole.stat().st_size == recording.size_bytes
                assert resumed.read_bytes() == whole.read_bytes()


class TestErrors:
    def test_every_error_code_maps_to_its_exception(self, stack: Stack) -> None:
        api_key = stack.org()
        no_retry = RetryPolicy(retries=0)
        with Client(api_key, stack.base_url, retry=no_retry) as client:
            with pytest.raises(InvalidNumbers) as numbers:
                client.calls.create("12345", "9123456789")
            assert (numbers.value.status, numbers.value.code, numbers.value.message) == (
                400,
                "invalid_numbers",
                "party_a must be a 10-digit Indian mobile number.",
            )
            with pytest.raises(InvalidRequest):
                client.calls.create("9876543210", "9123456789", max_duration_sec=5)
            with pytest.raises(NotFound):
                client.calls.get(str(uuid.uuid4()))
            with pytest.raises(MethodNotAllowed):
                client.data(Spec("DELETE", "/v1/masking/billing"))
            client.calls.create("9876556789", "9123456789", idempotency_key="k1", record=False)
            with pytest.raises(IdempotencyConflict):
                client.calls.create("9876556789", "9123400000", idempotency_key="k1")
            with pytest.raises(PayloadTooLarge):
                client.calls.create("9876543210", "9123456789", metadata={"x": "y" * 70_000})
        with Client("vp_live_nope", stack.base_url, retry=no_retry) as stranger:
            with pytest.raises(Unauthorized) as unauthorized:
                stranger.billing()
            assert unauthorized.value.status == 401
        with Client(stack.org("--balance", "0"), stack.base_url, retry=no_retry) as poor:
            with pytest.raises(InsufficientBalance) as poor_error:
                poor.calls.create("9876543210", "9123456789")
            assert poor_error.value.message == (
                "Insufficient balance. Please add funds to continue making calls."
            )

    def test_the_exception_family_names_every_spec_code(self) -> None:
        # no_masked_number and internal_error cannot be provoked from a server whose
        # database other tests share (its shared pool); the map is checked whole here.
        assert {code: cls.__name__ for code, cls in BY_CODE.items()} == {
            "invalid_numbers": "InvalidNumbers",
            "invalid_request": "InvalidRequest",
            "unauthorized": "Unauthorized",
            "insufficient_balance": "InsufficientBalance",
            "forbidden": "Forbidden",
            "not_found": "NotFound",
            "method_not_allowed": "MethodNotAllowed",
            "idempotency_conflict": "IdempotencyConflict",
            "payload_too_large": "PayloadTooLarge",
            "range_not_satisfiable": "RangeNotSatisfiable",
            "rate_limited": "RateLimited",
            "internal_error": "InternalError",
            "no_masked_number": "NoMaskedNumber",
        }
        assert all(issubclass(cls, MasklineError) for cls in BY_CODE.values())

    def test_recording_urls_answer_forbidden_and_range_not_satisfiable(self, stack: Stack) -> None:
        with Client(stack.org(), stack.base_url, retry=RetryPolicy(retries=0)) as client:
            call = client.calls.create("9876567890", "9123467890")
            _ended(client, call.call_sid)
            recording = client.recordings.get(call.call_sid)
            path = httpx.URL(recording.url)
            tampered = str(path.copy_with(query=path.query + b"0"))
            with pytest.raises(MasklineError) as forbidden:
                client.data(Spec("GET", tampered))
            assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
            beyond = {"Range": f"bytes={recording.size_bytes + 10}-"}
            # The signed URL is fetched without the API key, as a browser or player would.
            answer = error_from(httpx.get(recording.url, headers=beyond))
            assert (type(answer), answer.status) == (RangeNotSatisfiable, 416)


class TestWebhooks:
    def test_the_spec_test_vector_verifies_both_ways(self) -> None:
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        body = b'{"event":"call.completed","call_sid":"d28be7cd-9840-4b23-9627-199f1ef81fc6"}'
        edesy = "4036bb72fb06c77ade0af3ecf71cbfc56b8fe65539a2b60eaa6bc75316e21eed"
        event = verify_webhook(body, {"X-Edesy-Signature": edesy}, secret)
        assert (event.event, event.call_sid) == (
            "call.completed",
            "d28be7cd-9840-4b23-9627-199f1ef81fc6",
        )
        standard = {
            "webhook-id": "evt_2bJ4Qh0eTtkzLr9V",
            "webhook-timestamp": "1767225600",
            "webhook-signature": "v1,Ndf5KOOKk6HA9iAVYlhtrp+vhqBx3/RTtLSOQuwXe/o=",
        }
        # 2026-01-01 is far outside the timestamp tolerance: a replay.
        with pytest.raises(WebhookVerificationError):
            verify_webhook(body, standard, secret)
        with pytest.raises(WebhookVerificationError):
            verify_webhook(body + b" ", {"X-Edesy-Signature": edesy}, secret)

    def test_a_delivered_webhook_verifies_and_a_tampered_one_does_not(
        self, stack: Stack, receiver: Receiver
    ) -> None:
        api_key = stack.org()
        stack.cli("webhook", "set", "--org", stack.name, "--url", receiver.url)
        secret = stack.webhook_secret
        with Client(api_key, stack.base_url) as client:
            call = client.calls.create("9876578901", "9123478901", record=False)
            got = eventually_blocking(
                receiver.succeeded,
                lambda hooks: any(json.loads(h.body)["event"] == "call.completed" for h in hooks),
                what="call.completed delivered",
                within=30,
            )
            completed = next(h for h in got if json.loads(h.body)["event"] == "call.completed")
            event = verify_webhook(completed.body, completed.headers, secret)
            assert (event.event, event.call_sid, event.data["status"]) == (
                "call.completed",
                call.call_sid,
                "completed",
            )
            edesy_only = {"x-edesy-signature": completed.headers["x-edesy-signature"]}
            assert verify_webhook(completed.body, edesy_only, secret).id == event.id
            with pytest.raises(WebhookVerificationError):
                verify_webhook(
                    completed.body.replace(b"completed", b"failed"), completed.headers, secret
                )
            events = [e.event for e in client.events() if e.call_sid == call.call_sid]
            assert events == [
                "call.initiated",
                "call.ringing",
                "call.answered",
                "call.bridged",
                "call.completed",
            ]
            deliveries = list(client.deliveries.list(call_sid=call.call_sid))
            assert {d.event for d in deliveries} == set(events)
            first = next(d for d in deliveries if d.event == "call.initiated")
            client.deliveries.replay(first.id)
            replayed = eventually_blocking(
                lambda: next(
                    iter(client.deliveries.list(call_sid=call.call_sid, event="call.initiated"))
                ),
                lambda d: d.status == "succeeded" and d.attempts == 2,
                what="the replayed delivery sent again",
                within=30,
            )
            assert replayed.id == first.id


class TestReadme:
    def test_the_readme_call_runs(
        self, stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        block = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
        assert block is not None
        assert len(block.group(1).strip().splitlines()) < 15
        monkeypatch.setenv("MASKLINE_API_KEY", stack.org())
        monkeypatch.setenv("MASKLINE_URL", stack.base_url)
        exec(compile(block.group(1), str(README), "exec"), {})  # noqa: S102 - the README's own lines
        assert capsys.readouterr().out == "completed 1 1.5\n"
