"""SPEC §1 under schemathesis: every operation of ``/openapi.json``, fed generated
requests (valid and invalid) by a real organisation's key, answers without a 5xx and
only with the statuses, content types and bodies the document declares."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from maskline.app import create_app
from maskline.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.cli import run_cli
from tests.support.server import running_server

# An address in TEST-NET-1 (RFC 5737): a literal (no DNS lookup) that the webhook
# check refuses, so no generated webhook_url ever makes the server use the network.
UNROUTABLE = "192.0.2.1"


@dataclass(frozen=True)
class Target:
    base_url: str
    api_key: str


@pytest.fixture(scope="module")
def target(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    cwd = tmp_path_factory.mktemp("schemathesis")
    env = {
        "MASKLINE_DATABASE_URL": database_url,
        "MASKLINE_SECRET_KEY": TEST_SECRET_KEY,
        "MASKLINE_DATA_DIR": str(cwd / "data"),
        # Generated calls end quickly, so the org's live-call cap and numbers are not used up.
        "MASKLINE_SIM_RING_SEC": "0.05",
        "MASKLINE_SIM_TALK_SEC": "0.2",
        "MASKLINE_CALL_STATUS_RATE_LIMIT_PER_MINUTE": "1000000",
        "MASKLINE_AUTH_FAILURE_LIMIT_PER_MINUTE": "1000000",
    }

    def cli(*args: str) -> Any:
        result = run_cli(*args, "--json", env=env, cwd=cwd)
        assert (result.code, result.stderr) == (0, ""), result.stderr
        return result.json

    cli("org", "create", "schemathesis", "--balance", "100000", "--max-live-calls", "1000")
    # Its own numbers, enough for the generated calls that overlap.
    cli("numbers", "add", *(f"9180880000{n:02d}" for n in range(10)), "--org", "schemathesis")
    key = cli("key", "create", "--org", "schemathesis", "--rate-limit", "1000000")["api_key"]
    with running_server(env, cwd) as server:
        yield Target(server.base_url, key)


def _openapi() -> dict[str, Any]:
    """The document the app serves (building the app connects to nothing)."""
    app = create_app(Settings(_env_file=None, secret_key=TEST_SECRET_KEY))  # type: ignore[call-arg]
    return app.openapi()


# Operations where a request can match the schema and still be refused, by a rule
# no JSON Schema states; schemathesis's positive_data_acceptance is replaced by
# ``_check_schema_valid_request_accepted``, which allows exactly these statuses there.
SEMANTIC_RULES: dict[tuple[str, str], tuple[int, ...]] = {
    # A == B; a party that is no Indian mobile; a webhook_url that resolves to a
    # non-global address (all generated ones do, see UNROUTABLE); metadata over 1 KB.
    # 503: the org's numbers can all be busy with live calls of the same parties.
    # 409: the document's example Idempotency-Key, sent again with another body
    # (schemathesis's explicit examples combine it with generated ones; SPEC §3).
    ("POST", "/v1/masking/calls"): (400, 409, 503),
    # end_date not after start_date; a date that is not a calendar date; a bad party.
    ("GET", "/v1/masking/call-logs"): (400,),
    ("GET", "/v1/masking/stats"): (400,),
    # A cursor this organisation's feed never issued (SPEC §6: 400).
    ("GET", "/v1/events"): (400,),
    # A list cursor maskline never issued, or page and cursor together; page past the
    # first 10,000 rows (SPEC §3: 400).
    ("GET", "/v1/masking/billing/invoices"): (400,),
    ("GET", "/v1/webhooks/deliveries"): (400,),
    # Only the server can sign a recording URL: a generated signature is a 403.
    ("GET", "/v1/masking/recordings/{call_sid}.mp3"): (403,),
    # Only Razorpay can sign a webhook body: a generated X-Razorpay-Signature is a 400.
    ("POST", "/v1/payments/razorpay/webhook"): (400,),
}
# Always acceptable answers to a schema-valid request: generated ids name nothing
# (404), the budget may run out (429).
ACCEPTABLE = (404, 429)

OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(
    OPENAPI,
    config=SchemathesisConfig.from_dict(
        {
            "seed": 8,
            "generation": {
                "max-examples": 30,
                "deterministic": True,
                "database": "none",
                # Unknown parameters are ignored by design (SPEC §3: "Unknown fields are
                # ignored"), so a request that adds one is not invalid.
                "allow-extra-parameters": False,
            },
        }
    ),
)


def _check_schema_valid_request_accepted(case: Any, response: Any) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    status = response.status_code
    if 200 <= status < 300 or status in ACCEPTABLE:
        return
    operation = (case.operation.method.upper(), case.operation.path)
    assert status in SEMANTIC_RULES.get(operation, ()), (
        f"{operation} refused a schema-valid request with {status}: {response.text}\n"
        f"{case.as_curl_command()}"
    )


def test_the_fuzzed_document_is_the_one_the_server_serves(target: Target) -> None:
    served = httpx.get(f"{target.base_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == OPENAPI


def _keep_webhooks_local(case: Any) -> None:
    """Point a generated https webhook_url's host at an unroutable literal address."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("webhook_url"), str):
        return
    url: str = body["webhook_url"]
    rewritten = re.sub(
        r"^([A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?)(\[[^\]]*\]|[^:/?#]*)",
        lambda m: m.group(1) + UNROUTABLE,
        url,
    )
    try:
        host = urlsplit(rewritten).hostname
    except ValueError:
        host = None
    body["webhook_url"] = rewritten if host in (None, UNROUTABLE) else f"https://{UNROUTABLE}/"


@schema.parametrize()
def test_every_operation_conforms_to_its_openapi_declaration(case: Any, target: Target) -> None:
    _keep_webhooks_local(case)
    response = case.call_and_validate(
        base_url=target.base_url,
        headers={"Authorization": f"Bearer {target.api_key}"},
        excluded_checks=[positive_data_acceptance],
    )
    _check_schema_valid_request_accepted(case, response)
