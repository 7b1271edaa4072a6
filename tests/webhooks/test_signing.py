"""SPEC §6's test vector, and the verifiers that docs/webhooks.md gives, run as written."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from maskline.webhooks.signing import edesy_signature, signed_headers, standard_signature

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "evt_2bJ4Qh0eTtkzLr9V"
TIMESTAMP = 1767225600
BODY = b'{"event":"call.completed","call_sid":"d28be7cd-9840-4b23-9627-199f1ef81fc6"}'
EDESY = "4036bb72fb06c77ade0af3ecf71cbfc56b8fe65539a2b60eaa6bc75316e21eed"
STANDARD = "v1,Ndf5KOOKk6HA9iAVYlhtrp+vhqBx3/RTtLSOQuwXe/o="
HEADERS = {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": STANDARD}


def code_block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, f"docs/webhooks.md should have one {language} block"
    return str(blocks[0])


class TestVector:
    def test_our_signatures_match_the_spec(self) -> None:
        assert edesy_signature(SECRET, BODY) == EDESY
        assert standard_signature(SECRET, MSG_ID, TIMESTAMP, BODY) == STANDARD

    def test_the_standardwebhooks_package_accepts_our_headers(self) -> None:
        # The package refuses old timestamps, so sign the vector's body now.
        headers = signed_headers(
            secrets=[SECRET], msg_id=MSG_ID, timestamp=int(time.time()), body=BODY
        )
        assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)

    def test_during_a_rotation_both_secrets_sign(self) -> None:
        new = "whsec_" + "A" * 43 + "="
        headers = signed_headers(
            secrets=[new, SECRET], msg_id=MSG_ID, timestamp=TIMESTAMP, body=BODY
        )
        assert headers["X-Edesy-Signature"] == EDESY
        assert headers["webhook-signature"].split(" ")[1] == STANDARD
        assert headers["webhook-signature"].split(" ")[0] == standard_signature(
            new, MSG_ID, TIMESTAMP, BODY
        )


class TestDocumentedVerifiers:
    def test_the_python_verifier(self) -> None:
        namespace: dict[str, Any] = {}
        exec(code_block("python"), namespace)  # noqa: S102 - running our own documentation
        verify = namespace["verify"]
        assert verify(SECRET, HEADERS, BODY, tolerance=10**10) is True
        assert verify(SECRET, HEADERS, BODY + b" ", tolerance=10**10) is False
        assert verify(SECRET, HEADERS, BODY) is False  # too old for the default 5 minutes
        assert len(code_block("python").strip().splitlines()) <= 12

    @pytest.mark.parametrize(("body", "expected"), [(BODY, "true"), (BODY + b" ", "false")])
    def test_the_node_verifier(self, tmp_path: Path, body: bytes, expected: str) -> None:
        script = tmp_path / "verify.js"
        script.write_text(
            code_block("js") + f"\nconsole.log(verify({json.dumps(SECRET)}, {json.dumps(HEADERS)}, "
            f"Buffer.from({json.dumps(body.decode())}), 1e12));\n"
        )
        done = subprocess.run(
            ["node", str(script)], capture_output=True, text=True, timeout=30, check=False
        )
        assert (done.returncode, done.stdout.strip()) == (0, expected), done.stderr
