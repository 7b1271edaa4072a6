"""The OpenAPI 3.1 document: FastAPI's, without its 422 (our validation errors are 400
``invalid_request``), listing every error an operation can answer (SPEC §1), with an
example of every parameter, request body, response and error (``examples.py``)."""

from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from maskline.calls.router import BODY_MODELS as CALL_BODIES
from maskline.errors import (
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    list_errors,
)
from maskline.kit.bodies import BODY_METHODS
from maskline.openapi import examples

ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
# An error response's description names its codes: "`invalid_numbers`; `invalid_request`".
ERROR_CODE = re.compile(r"`([a-z_]+)`")
# The document's own way of saying "this body is Razorpay's event, read raw".
RAZORPAY_WEBHOOK = ("post", "/v1/payments/razorpay/webhook")


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _list_errors(schema)
        components = schema.setdefault("components", {})
        # Bodies read by the routes themselves (for the seed's messages): their models.
        for model in CALL_BODIES:
            body_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.setdefault("schemas", {})[str(body_schema["title"])] = body_schema
        components.get("schemas", {}).pop("HTTPValidationError", None)
        components.get("schemas", {}).pop("ValidationError", None)
        components["securitySchemes"] = {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "vp_live_… or vp_test_…"}
        }
        # Every operation needs the key unless it says otherwise (``security: []``).
        schema["security"] = [{"apiKey": []}]
        _add_examples(schema)
        # The examples are module constants, shared by every app built in the process:
        # the document gets its own copy, so that whoever changes a served document (a
        # client that edits an example it was given) changes no other.
        schema = copy.deepcopy(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _list_errors(schema: dict[str, Any]) -> None:
    too_large = {"description": f"`{PayloadTooLarge.code}`", "content": _json(ENVELOPE)}
    for path in schema.get("paths", {}).values():
        for method, operation in path.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            # BodyLimitMiddleware answers it on every route whose method takes a body.
            if method.upper() in BODY_METHODS:
                responses[str(PayloadTooLarge.status_code)] = too_large
            # SPEC §1: every error the API can return is listed. Any request can meet an
            # unknown path, a method the path does not serve, or a bug; a keyed one also
            # the key, its budget and a repeated query parameter (checked with it).
            list_errors(responses, NotFound, MethodNotAllowed, InternalError)
            if operation.get("security") != []:
                list_errors(responses, InvalidRequest, Unauthorized, RateLimited)
            operation["responses"] = dict(sorted(responses.items()))


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _add_examples(schema: dict[str, Any]) -> None:
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            query = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            for parameter in operation.get("parameters", []):
                name = parameter["name"]
                special = examples.OPERATION_PARAMETER_EXAMPLES.get((path, name))
                if special is not None:
                    parameter["example"] = special
                elif name in examples.PARAMETER_EXAMPLES:
                    parameter["example"] = examples.PARAMETER_EXAMPLES[name]
            if (method, path) == RAZORPAY_WEBHOOK:
                operation["requestBody"] = {
                    "description": "A Razorpay webhook event, signed by X-Razorpay-Signature.",
                    "required": True,
                    "content": _json({"type": "object"}),
                }
                operation["requestBody"]["content"]["application/json"]["example"] = (
                    examples.RAZORPAY_EVENT
                )
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None and "example" not in body:
                body["example"] = examples.SCHEMA_EXAMPLES.get(_schema_name(body))
            for status, response in operation.get("responses", {}).items():
                codes = ERROR_CODE.findall(response.get("description", ""))
                if codes and int(status) >= 400:
                    media = response.setdefault("content", _json(ENVELOPE))["application/json"]
                    media["examples"] = {
                        code: {
                            "summary": code,
                            "value": _error(method, path, code, query[0] if query else "expand"),
                        }
                        for code in codes
                    }
                    continue
                special = examples.OPERATION_EXAMPLES.get((method, path, status))
                if special is not None and not response.get("content"):
                    response["content"] = _json({"type": "object"})
                for media in response.get("content", {}).values():
                    example = special or examples.SCHEMA_EXAMPLES.get(_schema_name(media))
                    if example is not None:
                        media["example"] = example


def _schema_name(media: dict[str, Any]) -> str:
    return str(media.get("schema", {}).get("$ref", "")).rpartition("/")[2]


def _error(method: str, path: str, code: str, parameter: str) -> dict[str, Any]:
    message = examples.OPERATION_ERROR_MESSAGES.get((method, path, code))
    if message is None:
        message = examples.ERROR_MESSAGES[code].format(parameter=parameter)
    body: dict[str, Any] = {"code": code, "message": message}
    if code == InternalError.code:
        body["request_id"] = examples.REQUEST_ID
    return {"error": body}
