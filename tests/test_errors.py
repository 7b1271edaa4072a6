"""SPEC §1: every error in the envelope, with its status and code; OpenAPI lists them."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from maskline.settings import Settings
from tests.support.api import Api, running_api


class TestEnvelope:
    async def test_unknown_route_is_404_not_found(self, api: Api) -> None:
        response = await api.client.get("/v1/masking/nope")
        assert response.status_code == 404
        assert response.json() == {
            "error": {"code": "not_found", "message": "No such resource: check the path."}
        }

    async def test_wrong_method_is_405(self, api: Api) -> None:
        response = await api.client.delete("/v1/masking/billing")
        assert response.status_code == 405
        assert response.json() == {
            "error": {
                "code": "method_not_allowed",
                "message": "DELETE is not allowed on this resource.",
            }
        }
        assert response.headers["Allow"] == "GET"

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("per_page=101", "per_page: Input should be less than or equal to 100."),
            ("per_page=0", "per_page: Input should be greater than or equal to 1."),
            ("page=0", "page: Input should be greater than or equal to 1."),
            (
                "page=abc",
                "page: Input should be a valid integer, unable to parse string as an integer.",
            ),
        ],
    )
    async def test_bad_query_parameter_is_400_invalid_request(
        self, api: Api, query: str, message: str
    ) -> None:
        org = await api.make_org(f"err-query-{query.replace('=', '-')}")
        response = await api.client.get(f"/v1/masking/billing/invoices?{query}", headers=org.auth)
        assert response.status_code == 400
        assert response.json() == {"error": {"code": "invalid_request", "message": message}}

    async def test_key_is_checked_before_parameters(self, api: Api) -> None:
        response = await api.client.get("/v1/masking/billing/invoices?per_page=101")
        assert response.status_code == 401

    async def test_unexpected_exception_is_500_with_a_request_id_only(
        self, settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with running_api(settings) as api:

            async def explode() -> None:
                raise RuntimeError("SELECT secret FROM somewhere")

            api.app.add_api_route("/v1/explode", explode)
            with caplog.at_level(logging.ERROR, logger="maskline.app"):
                response = await api.client.get("/v1/explode")
        assert response.status_code == 500
        error = response.json()["error"]
        request_id = response.headers["X-Request-Id"]
        assert error == {
            "code": "internal_error",
            "message": f"An internal error occurred (request id {request_id}).",
            "request_id": request_id,
        }
        assert "SELECT" not in response.text
        assert any(r.exc_info and "SELECT secret" in str(r.exc_info[1]) for r in caplog.records)


class TestOpenApi:
    async def test_openapi_31_lists_every_error_of_a_route(self, api: Api) -> None:
        document = (await api.client.get("/openapi.json")).json()
        assert document["openapi"].startswith("3.1")
        operation = document["paths"]["/v1/masking/billing/invoices"]["get"]
        assert sorted(operation["responses"]) == ["200", "400", "401", "404", "405", "429", "500"]
        assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }
        assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"

    async def test_every_error_a_route_returns_is_listed_in_its_operation(self, api: Api) -> None:
        """Each route of the app (so a new one cannot escape) is asked without a key, with
        a repeated query parameter, with unknown ids, and with a method it does not serve;
        every error status it answers must be listed, with the error envelope."""
        org = await api.make_org("openapi-errors")
        document = (await api.client.get("/openapi.json")).json()
        routes = [
            route
            for route in iter_route_contexts(api.app.routes)
            if isinstance(route.original_route, APIRoute) and route.include_in_schema
        ]
        assert len(routes) >= 12
        for route in routes:
            path = re.sub(
                r"\{(call_sid|delivery_id|invoice_id)\}",
                "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b",
                route.path,
            )
            assert "{" not in path, route.path
            for method in sorted(route.methods or ()):
                listed = document["paths"][route.path][method.lower()]["responses"]
                answers: list[httpx.Response] = [
                    await api.client.request(method, path),
                    await api.client.request(method, path, headers=org.auth),
                    await api.client.request(
                        method, f"{path}?page=1&page=1", headers=org.auth, json={}
                    ),
                    await api.client.request("PATCH", path, headers=org.auth),
                ]
                for answer in answers:
                    if answer.status_code >= 400:
                        where = (method, route.path, answer.status_code, answer.text)
                        assert str(answer.status_code) in listed, where
                        assert _envelope_schema(listed[str(answer.status_code)]), where
                # The errors any request can meet: an unknown path, a wrong method, a bug.
                assert {"404", "405", "500"} <= set(listed), (method, route.path)

    async def test_docs_ui_is_served(self, api: Api) -> None:
        response = await api.client.get("/docs")
        assert response.status_code == 200
        assert "swagger-ui" in response.text


def _envelope_schema(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    return schema == {"$ref": "#/components/schemas/ErrorEnvelope"}
