"""SPEC §11: logs are JSON lines with a request id and ``call_sid``; secrets, keys and all
but the last 4 digits of phone numbers are never logged."""

from __future__ import annotations

import io
import json
import logging
import secrets
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from maskline.kit.logging import JsonFormatter, call_sid_var, request_id_var
from tests.conftest import TEST_SECRET_KEY, Cli
from tests.support.server import ended_call, running_server
from tests.support.sipp import free_udp_port

API_KEY = "vp_live_" + "Ab3" * 12 + "Zz9X1Q"
TEST_KEY = "vp_test_" + "Q7w" * 12 + "k2Lm0P"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OPERATOR_SECRET = "sip-trunk-password-42"
CALL_SID = "d28be7cd-9840-4b23-9627-199012345678"


@contextmanager
def captured(name: str) -> Iterator[io.StringIO]:
    """Records of logger ``name`` formatted as maskline formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(secrets=[OPERATOR_SECRET, None, "abc"]))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestJsonFormatter:
    def test_numbers_keep_their_last_four_digits(self) -> None:
        with captured("tests.ops.numbers") as stream:
            log = logging.getLogger("tests.ops.numbers")
            log.info("dialling %s for %s", "+91 98765 43210", "9123456789")
            log.info("INVITE sip:+919876543210@trunk From: <sip:+917969002802@trunk>")
            log.info("GET /v1/masking/call-logs?party=%2B91%2098765%2043210 0 9876543210")
        assert [entry["msg"] for entry in lines(stream)] == [
            "dialling +91 ***** *3210 for ******6789",
            "INVITE sip:+********3210@trunk From: <sip:+********2802@trunk>",
            "GET /v1/masking/call-logs?party=%2B91%20*****%20*3210 0 ******3210",
        ]

    def test_keys_secrets_and_tokens_are_masked_in_any_field(self) -> None:
        with captured("tests.ops.keys") as stream:
            log = logging.getLogger("tests.ops.keys")
            log.warning("key %s and %s signed with %s", API_KEY, TEST_KEY, WEBHOOK_SECRET)
            log.debug('REGISTER\r\nAuthorization: Digest username="u", response="9f1c"\r\nCSeq: 2')
            log.info(
                "retrying",
                extra={
                    "headers": {"authorization": f"Bearer {API_KEY}"},
                    "password": OPERATOR_SECRET,
                    "party": 9876543210,
                    "attempt": 3,
                },
            )
        first, second, third = lines(stream)
        assert first["msg"] == "key vp_live_*** and vp_test_*** signed with whsec_***"
        assert second["msg"] == "REGISTER\r\nAuthorization: ***\r\nCSeq: 2"
        assert (third["headers"], third["password"], third["party"], third["attempt"]) == (
            {"authorization": "Bearer ***"},
            "***",
            "******3210",
            3,
        )

    def test_exceptions_are_masked_and_our_ids_kept(self) -> None:
        request_token = request_id_var.set("req_0123456789abcdef")
        call_token = call_sid_var.set(CALL_SID)
        try:
            with captured("tests.ops.errors") as stream:
                try:
                    raise ValueError("party 9123456789 refused")
                except ValueError:
                    logging.getLogger("tests.ops.errors").exception("call %s failed", CALL_SID)
        finally:
            call_sid_var.reset(call_token)
            request_id_var.reset(request_token)
        (entry,) = lines(stream)
        assert entry["request_id"] == "req_0123456789abcdef"
        assert entry["call_sid"] == CALL_SID
        # A call sid in a message stays whole, though its last group is 12 digits.
        assert entry["msg"] == f"call {CALL_SID} failed"
        assert "ValueError: party ******6789 refused" in entry["exc"]
        assert "9123456789" not in entry["exc"]


class BusyTrunk:
    """A SIP trunk on loopback that answers every INVITE with 486 Busy Here."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.invites: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode(errors="replace")
            if not text.startswith("INVITE "):
                continue  # the ACK of our 486
            self.invites.append(text)
            head = text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
            copied = []
            for line in head:
                name = line.split(":", 1)[0].strip().lower()
                if name in ("via", "v", "from", "f", "call-id", "i", "cseq"):
                    copied.append(line)
                elif name in ("to", "t"):
                    copied.append(f"{line};tag=busy-trunk")
            response = "\r\n".join(["SIP/2.0 486 Busy Here", *copied, "Content-Length: 0", "", ""])
            self.sock.sendto(response.encode(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class TestServerLogs:
    def test_a_sip_call_logged_at_debug_shows_only_masked_numbers(
        self, cli: Cli, cli_settings_env: dict[str, str], tmp_path: Path
    ) -> None:
        org = cli.ok("org", "create", f"logs-{uuid.uuid4().hex[:8]}", "--balance", "10")
        masked = f"9180{secrets.randbelow(10**8):08d}"
        cli.ok("numbers", "add", masked, "--org", str(org["id"]))
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        trunk = BusyTrunk()
        env = {
            **cli_settings_env,
            "MASKLINE_CARRIER": "sip",
            "MASKLINE_SIP_TRUNK": f"127.0.0.1:{trunk.port}",
            "MASKLINE_SIP_BIND": f"127.0.0.1:{free_udp_port()}",
            "MASKLINE_SIP_PASSWORD": OPERATOR_SECRET,
            "MASKLINE_RTP_PORTS": "23200-23299",
            "MASKLINE_LOG_LEVEL": "DEBUG",
        }
        try:
            with running_server(env, tmp_path) as server:
                placed = httpx.post(
                    f"{server.base_url}/v1/masking/calls",
                    headers=auth,
                    json={"party_a": "+91 98765 43210", "party_b": "9123456789", "record": False},
                )
                assert placed.status_code == 201, placed.text
                sid = placed.json()["data"]["call_sid"]
                call = ended_call(server.base_url, sid, auth)
        finally:
            trunk.close()
        assert (call["status"], call["hangup_cause"], call["sip_code"]) == (
            "failed",
            "USER_BUSY",
            486,
        )
        # The trunk got the real numbers; the log did not.
        assert "sip:+919876543210@" in trunk.invites[0]
        output = server.output
        for secret in (
            "9876543210",
            "9123456789",
            masked,
            str(org["api_key"]),
            str(org["webhook_secret"]),
            TEST_SECRET_KEY,
            OPERATOR_SECRET,
        ):
            assert secret not in output
        entries = [json.loads(line) for line in server.lines if line.startswith("{")]
        wire = [entry["msg"] for entry in entries if entry["logger"] == "maskline.sip.wire"]
        assert any("INVITE sip:+********3210@" in message for message in wire), wire
        assert any(f"+********{masked[-4:]}" in message for message in wire), wire
        # Each request's line carries its id (and the call's sid, unchanged, in its path).
        (created,) = [e for e in entries if e["msg"].startswith("POST /v1/masking/calls 201 ")]
        assert created["logger"] == "maskline.http"
        assert created["request_id"] == placed.headers["x-request-id"]
        polled = [e for e in entries if e["msg"].startswith(f"GET /v1/masking/calls/{sid} 200 ")]
        assert polled
