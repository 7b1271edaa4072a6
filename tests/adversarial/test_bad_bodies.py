"""SPEC §1: whatever a client sends as a body, maskline answers with a 4xx of its table,
in the error envelope, at a bounded cost: 413 ``payload_too_large`` over 64 KiB
(decided before the body is read), 400 ``invalid_request`` for a body that is no JSON
it can read (too deep, a number too long to convert, NaN, a repeated key, a lone
surrogate), never a 500. The routes under test are read from the app itself, so a new
route that takes a body cannot escape."""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.calls.conftest import call_settings
from tests.conftest import Cli
from tests.support.api import Api, OrgHandle, running_api
from tests.support.server import running_server

CALLS = "/v1/masking/calls"
LIMIT = 64 * 1024
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
UNKNOWN_ID = "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
NOT_JSON = {"error": {"code": "invalid_request", "message": "The request body is not valid JSON."}}
PARTIES = b'{"party_a": "9876543210", "party_b": "9123456789"'
TOO_LARGE = {
    "error": {"code": "payload_too_large", "message": "The request body is larger than 64 KiB."}
}
# SPEC §1's table: every status a client may be answered with, and its codes.
SPEC_ERRORS: dict[int, set[str]] = {
    400: {"invalid_numbers", "invalid_request"},
    401: {"unauthorized"},
    402: {"insufficient_balance"},
    403: {"forbidden"},
    404: {"not_found"},
    405: {"method_not_allowed"},
    409: {"idempotency_conflict"},
    413: {"payload_too_large"},
    416: {"range_not_satisfiable"},
    429: {"rate_limited"},
}


def body_routes(api: Api) -> list[tuple[str, str]]:
    """(method, path) of every API route whose method carries a body, ids made unknown
    (the portal's HTML forms answer pages, not the envelope: ``tests/portal``)."""
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(api.app.routes):
        if getattr(route.original_route, "include_in_schema", True) is False:
            continue
        path = re.sub(r"\{[^}]+\}", UNKNOWN_ID, route.path or "")
        found |= {(m, path) for m in (route.methods or ()) if m in BODY_METHODS}
    return sorted(found)


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    # Hundreds of requests per test: none is refused for the key's budget.
    settings = call_settings(database_url, tmp_path / "data", rate_limit_per_minute=100_000)
    async with running_api(settings) as running:
        yield running


async def org_without_money(api: Api, name: str) -> OrgHandle:
    """A valid call request from it is answered 402, before any number is needed."""
    return await api.make_org(name, balance="0", numbers=1)


@pytest.fixture
async def poor_org(api: Api, request: pytest.FixtureRequest) -> OrgHandle:
    return await org_without_money(api, f"body-any-{request.node.name[-20:]}")


def assert_spec_error(response: httpx.Response, context: object) -> None:
    assert response.status_code in SPEC_ERRORS, (context, response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, (context, body)
    assert set(body["error"]) == {"code", "message"}, (context, body)
    assert body["error"]["code"] in SPEC_ERRORS[response.status_code], (context, body)
    assert isinstance(body["error"]["message"], str), (context, body)
    assert body["error"]["message"], (context, body)


class Chunks:
    """A request body streamed in 16 KiB chunks that counts how many were read."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.total:
            self.read += 1
            chunk = b" " * min(16 * 1024, self.total - sent)
            sent += len(chunk)
            yield chunk


class TestBodySize:
    async def test_a_declared_length_over_64_kib_is_413_before_the_body_is_read(
        self, api: Api
    ) -> None:
        org = await org_without_money(api, "body-declared")
        body = Chunks(10 * 1024 * 1024)
        response = await api.client.post(
            CALLS,
            headers={
                **org.auth,
                "Content-Type": "application/json",
                "Content-Length": str(body.total),
            },
            content=body,
        )
        assert (response.status_code, response.json()) == (413, TOO_LARGE)
        assert body.read == 0

    async def test_a_streamed_body_is_cut_off_once_it_passes_64_kib(self, api: Api) -> None:
        org = await org_without_money(api, "body-chunked")
        body = Chunks(10 * 1024 * 1024)
        response = await api.client.post(
            CALLS, headers={**org.auth, "Content-Type": "application/json"}, content=body
        )
        assert "content-length" not in response.request.headers
        assert (response.status_code, response.json()) == (413, TOO_LARGE)
        assert body.read == LIMIT // (16 * 1024) + 1

    async def test_a_body_of_exactly_64_kib_is_read(self, api: Api) -> None:
        org = await org_without_money(api, "body-at-limit")
        call = {"party_a": "9876543210", "party_b": "9123456789"}
        text = json.dumps(call)
        padded = text[:-1] + " " * (LIMIT - len(text)) + "}"
        assert len(padded.encode()) == LIMIT
        response = await api.client.post(
            CALLS, headers={**org.auth, "Content-Type": "application/json"}, content=padded
        )
        assert response.status_code == 402, response.text

    async def test_every_route_that_takes_a_body_refuses_one_over_64_kib(self, api: Api) -> None:
        org = await org_without_money(api, "body-every-route")
        routes = body_routes(api)
        assert ("POST", CALLS) in routes
        for method, path in routes:
            response = await api.client.request(
                method, path, headers=org.auth, content=b"{" + b" " * LIMIT + b"}"
            )
            assert (response.status_code, response.json()) == (413, TOO_LARGE), (method, path)

    async def test_the_413_is_in_the_openapi_document_of_every_route_that_takes_a_body(
        self, api: Api
    ) -> None:
        document = (await api.client.get("/openapi.json")).json()
        operations = {
            (method.upper(), path): operation
            for path, item in document["paths"].items()
            for method, operation in item.items()
        }
        with_body = {op for op in operations if op[0] in BODY_METHODS}
        assert ("POST", CALLS) in with_body
        for key in with_body:
            answer = operations[key]["responses"]["413"]
            assert answer["description"] == "`payload_too_large`", key
            assert answer["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorEnvelope"
            }
        assert all("413" not in operations[op]["responses"] for op in operations.keys() - with_body)


class TestUnreadableJson:
    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(b'{"party_a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", id="nested-10000"),
            pytest.param(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, id="nested-objects"),
            pytest.param(b'{"max_duration_sec": ' + b"9" * 5000 + b"}", id="integer-5000-digits"),
            pytest.param(PARTIES + b', "max_duration_sec": NaN}', id="nan"),
            pytest.param(PARTIES + b', "x": -Infinity}', id="infinity"),
            pytest.param(PARTIES + b', "metadata": {"order": "\\udc00"}}', id="lone-surrogate"),
            pytest.param(PARTIES + b', "metadata": {"\\ud800": "x"}}', id="lone-surrogate-key"),
            pytest.param('{"party_a": "9876543210"}'.encode("utf-16"), id="utf-16"),
            pytest.param(b'{"party_a": "caf\xe9"}', id="latin-1"),
        ],
    )
    async def test_a_body_maskline_cannot_read_as_json_is_400_invalid_request(
        self, api: Api, raw: bytes
    ) -> None:
        org = await org_without_money(api, f"body-unreadable-{uuid.uuid4().hex[:8]}")
        response = await api.client.post(
            CALLS, headers={**org.auth, "Content-Type": "application/json"}, content=raw
        )
        assert (response.status_code, response.json()) == (400, NOT_JSON)

    async def test_a_key_given_twice_is_400_naming_it(self, api: Api) -> None:
        org = await org_without_money(api, "body-duplicate-key")
        raw = b'{"party_a": "9876543210", "party_b": "9123456789", "party_b": "9123456780"}'
        response = await api.client.post(
            CALLS, headers={**org.auth, "Content-Type": "application/json"}, content=raw
        )
        assert (response.status_code, response.json()) == (
            400,
            {
                "error": {
                    "code": "invalid_request",
                    "message": 'The request body gives "party_b" more than once.',
                }
            },
        )

    async def test_a_surrogate_pair_written_as_escapes_is_one_character(self, api: Api) -> None:
        org = await api.make_org("body-surrogate-pair", balance="10", numbers=1)
        raw = (
            b'{"party_a": "9876540000", "party_b": "9123456789", "ring_timeout_sec": 120, '
            b'"metadata": {"note": "\\ud83d\\ude00"}}'
        )
        response = await api.client.post(
            CALLS, headers={**org.auth, "Content-Type": "application/json"}, content=raw
        )
        assert response.status_code == 201, response.text
        assert response.json()["data"]["metadata"] == {"note": "\U0001f600"}


# --- properties: arbitrary JSON and bytes at every route that takes a body -------------

# Deterministic and bounded: the same few hundred examples on every run.
BOUNDED = settings(
    derandomize=True,
    database=None,
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

odd_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\u0000", "\u200b", "\u202e", "\ufeff", "\uffff", "٩", "９", "+", " "]),
    ),
    max_size=40,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
    st.sampled_from(["9876543210", "+91 98765 43210", "9123456789", "https://192.0.2.1/"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(
            st.one_of(
                odd_text,
                st.sampled_from(
                    [
                        "party_a",
                        "party_b",
                        "max_duration_sec",
                        "record",
                        "ring_timeout_sec",
                        "webhook_url",
                        "metadata",
                    ]
                ),
            ),
            inner,
            max_size=8,
        ),
    ),
    max_leaves=40,
)


@st.composite
def raw_json(draw: st.DrawFn) -> bytes:
    """JSON text, sometimes bent: very deep, very wide, a huge number, NaN or Infinity,
    a repeated key, a lone surrogate escape."""
    text = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans()))
    bend = draw(st.sampled_from(["none", "deep", "wide", "huge", "constant", "repeat", "lone"]))
    if bend == "deep":
        depth = draw(st.integers(500, 20_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        text = opener * depth + text + closer * depth
    elif bend == "wide":
        text = "[" + ",".join([text] * draw(st.integers(100, 4000))) + "]"
    elif bend == "huge":
        digits = draw(st.integers(4000, 20_000))
        text = f'{{"party_a": "9876543210", "max_duration_sec": {"7" * digits}}}'
    elif bend == "constant":
        constant = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        text = f'{{"party_a": "9876543210", "party_b": "9123456789", "record": {constant}}}'
    elif bend == "repeat":
        text = '{"party_a": "9876543210", "party_b": "9123456789", "party_a": ' + text + "}"
    elif bend == "lone":
        escape = draw(st.sampled_from(["\\ud800", "\\udfff", "\\ud83d x"]))
        text = (
            f'{{"party_a": "9876543210", "party_b": "9123456789", "metadata": {{"k": "{escape}"}}}}'
        )
    return text.encode("utf-8", "surrogatepass")


class TestAnyBody:
    @BOUNDED
    @given(raw=st.one_of(raw_json(), st.binary(max_size=300)), as_json=st.booleans())
    async def test_any_body_at_any_route_is_a_4xx_of_the_spec_never_a_500(
        self, api: Api, poor_org: OrgHandle, raw: bytes, as_json: bool
    ) -> None:
        headers = {**poor_org.auth, "Content-Type": "application/json" if as_json else "text/plain"}
        for method, path in body_routes(api):
            response = await api.client.request(method, path, headers=headers, content=raw)
            assert_spec_error(response, (method, path, raw[:200]))


class TestClientGoneMidBody:
    def test_a_body_the_client_never_finished_places_no_call(
        self, cli: Cli, cli_settings_env: dict[str, str], tmp_path: Path
    ) -> None:
        # A chunked body whose first chunk is a whole, valid call request; the client
        # goes away before the last chunk. The request was never made: no call.
        org = cli.ok("org", "create", f"body-gone-{uuid.uuid4().hex[:8]}", "--balance", "10")
        masked = f"9179{uuid.uuid4().int % 10**8:08d}"
        cli.ok("numbers", "add", masked, "--org", str(org["id"]))
        env = {**cli_settings_env, "MASKLINE_CARRIER": "sim"}
        with running_server(env, tmp_path) as server:
            host, port = server.base_url.removeprefix("http://").split(":")
            chunk = PARTIES + b"}"
            with socket.create_connection((host, int(port)), timeout=10) as raw:
                raw.sendall(
                    b"POST " + CALLS.encode() + b" HTTP/1.1\r\n"
                    b"Host: " + host.encode() + b"\r\n"
                    b"Authorization: Bearer " + str(org["api_key"]).encode() + b"\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                    + f"{len(chunk):x}\r\n".encode()
                    + chunk
                    + b"\r\n"
                )
                # Not a wait for something: the server takes the chunk in before the
                # connection goes, and shows nothing when it has.
                time.sleep(0.5)
            # Not a wait for something: the time a wrongly placed call would take to
            # show in the logs; an absence has no event to wait on.
            time.sleep(0.5)
            logs = httpx.get(
                f"{server.base_url}/v1/masking/call-logs",
                headers={"Authorization": f"Bearer {org['api_key']}"},
                timeout=10,
            )
        assert (logs.status_code, logs.json()["data"]) == (200, [])
