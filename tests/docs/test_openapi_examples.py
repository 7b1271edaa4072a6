"""Issue 17: the OpenAPI document carries an example of every parameter, request body,
response and error (SPEC §1's codes, per operation), and the examples are real: each
is valid against its own schema, the request body passes the API's own validation,
and the values agree with each other (one call id, RFC 3339 UTC times)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest

from maskline import errors
from maskline.app import create_app
from maskline.calls.intake import parse_new_call
from maskline.settings import Settings

# Bodies that are bytes, not JSON: an example would say nothing.
BINARY = frozenset({"audio/mpeg", "application/pdf"})
CODE_STATUS = {
    cls.code: cls.status_code
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.AppError) and cls is not errors.AppError
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    schema: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    return schema


def operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def valid(document: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    root = {**schema, "components": document["components"]}
    return [error.message for error in jsonschema_rs.validator_for(root).iter_errors(value)]


def walk(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from walk(inner, name)
    elif isinstance(value, list):
        for inner in value:
            yield from walk(inner, key)
    else:
        yield key, value


class TestEveryOperationHasExamples:
    def test_every_parameter_has_a_valid_example(self, document: dict[str, Any]) -> None:
        for name, operation in operations(document):
            for parameter in operation.get("parameters", []):
                where = f"{name} parameter {parameter['name']}"
                assert "example" in parameter, where
                assert valid(document, parameter["schema"], parameter["example"]) == [], where

    def test_every_request_body_has_a_valid_example(self, document: dict[str, Any]) -> None:
        bodies = 0
        for name, operation in operations(document):
            for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
                assert "example" in media, f"{name} request {media_type}"
                assert valid(document, media["schema"], media["example"]) == [], name
                bodies += 1
        assert bodies == 2  # a new call; Razorpay's webhook event

    def test_every_success_response_has_a_valid_example(self, document: dict[str, Any]) -> None:
        for name, operation in operations(document):
            for status, response in operation["responses"].items():
                if (int(status) >= 400 and status != "503") or "content" not in response:
                    continue
                for media_type, media in response["content"].items():
                    if media_type in BINARY or "examples" in media:
                        continue
                    where = f"{name} → {status} {media_type}"
                    assert "example" in media, where
                    if media_type == "application/json":
                        assert valid(document, media["schema"], media["example"]) == [], where
                    else:
                        assert isinstance(media["example"], str), where

    def test_every_error_has_an_example_per_code(self, document: dict[str, Any]) -> None:
        for name, operation in operations(document):
            for status, response in operation["responses"].items():
                codes = re.findall(r"`([a-z_]+)`", response.get("description", ""))
                if not codes:
                    continue
                where = f"{name} → {status}"
                media = response["content"]["application/json"]
                assert media["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}, where
                assert list(media["examples"]) == codes, where
                for code, example in media["examples"].items():
                    assert CODE_STATUS[code] == int(status), where
                    body = example["value"]
                    assert valid(document, media["schema"], body) == [], where
                    assert body["error"]["code"] == code, where
                    assert body["error"]["message"].endswith("."), where
                    assert ("request_id" in body["error"]) == (code == "internal_error"), where

    def test_creating_a_call_lists_every_spec_code_it_can_answer(
        self, document: dict[str, Any]
    ) -> None:
        responses = document["paths"]["/v1/masking/calls"]["post"]["responses"]
        listed = {
            code: status
            for status, response in responses.items()
            for code in response.get("content", {}).get("application/json", {}).get("examples", {})
        }
        assert listed == {
            "invalid_numbers": "400",
            "invalid_request": "400",
            "unauthorized": "401",
            "insufficient_balance": "402",
            "not_found": "404",
            "method_not_allowed": "405",
            "idempotency_conflict": "409",
            "payload_too_large": "413",
            "rate_limited": "429",
            "internal_error": "500",
            "no_masked_number": "503",
        }
        assert responses["400"]["content"]["application/json"]["examples"]["invalid_numbers"][
            "value"
        ] == {
            "error": {
                "code": "invalid_numbers",
                "message": "Party A and Party B cannot be the same number.",
            }
        }
        assert responses["201"]["content"]["application/json"]["example"]["data"]["status"] == (
            "initiated"
        )


class TestTheExamplesAreReal:
    def test_the_new_call_example_passes_the_apis_own_validation(
        self, document: dict[str, Any]
    ) -> None:
        body = document["paths"]["/v1/masking/calls"]["post"]["requestBody"]["content"][
            "application/json"
        ]["example"]
        parsed = parse_new_call(
            json.dumps(body).encode(), default_ring_timeout=30, allow_private_webhooks=False
        )
        assert (parsed.party_a, parsed.party_b, parsed.max_duration_sec) == (
            "9876543210",
            "9123456789",
            600,
        )

    def test_the_values_agree_with_each_other(self, document: dict[str, Any]) -> None:
        values = list(walk(document["paths"]))
        call_sids = {value for key, value in values if key == "call_sid"}
        assert call_sids == {"d28be7cd-9840-4b23-9627-199f1ef81fc6"}
        assert all(UUID4.match(sid) for sid in call_sids)
        times = [value for key, value in values if key.endswith("_at") and value is not None]
        assert len(times) > 10
        assert [t for t in times if not TIMESTAMP.match(t)] == []
        masked = {value for key, value in values if key in ("masked_number", "caller_number")}
        assert masked == {"917969002802"}
        parties = {value for key, value in values if key in ("party_a", "party_b", "party")}
        assert parties == {"9876543210", "9123456789"}
