"""The seed's own snippets (curl, Python requests, Node fetch) work against maskline
unchanged but for the base URL and the key, and the call completes by itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Cli
from tests.support.server import ended_call, running_server

SEED_BASE = "https://voice-api.edesy.in/v1"

CURL = """curl -X POST https://voice-api.edesy.in/v1/masking/calls \\
-H "Authorization: Bearer vp_YOUR_API_KEY" \\
-H "Content-Type: application/json" \\
-d '{
"party_a": "9876543210",
"party_b": "9123456789"
}'"""

NODE = """const response = await fetch("https://voice-api.edesy.in/v1/masking/calls", {
method: "POST",
headers: {
"Authorization": "Bearer vp_YOUR_API_KEY",
"Content-Type": "application/json",
},
body: JSON.stringify({
party_a: "9876543210",
party_b: "9123456789",
}),
});
const data = await response.json();
console.log(JSON.stringify(data));"""

PYTHON = """import requests
response = requests.post(
"https://voice-api.edesy.in/v1/masking/calls",
headers={
"Authorization": "Bearer vp_YOUR_API_KEY",
"Content-Type": "application/json",
},
json={"party_a": "9876543210", "party_b": "9123456789"},
)
import json; print(json.dumps(response.json()))"""


def _adapt(snippet: str, base: str, key: str) -> str:
    return snippet.replace(SEED_BASE, f"{base}/v1").replace("vp_YOUR_API_KEY", key)


class TestSeedSnippets:
    def test_curl_python_and_node_place_calls_that_complete(
        self, cli: Cli, cli_settings_env: dict[str, str], tmp_path: Path
    ) -> None:
        org = cli.ok("org", "create", "seed-snippets", "--balance", "50")
        cli.ok(
            "numbers",
            "add",
            "918071000001",
            "918071000002",
            "918071000003",
            "--org",
            "seed-snippets",
        )
        key = str(org["api_key"])
        env = {**cli_settings_env, "MASKLINE_SIM_RING_SEC": "0.2", "MASKLINE_SIM_TALK_SEC": "1"}
        node_file = tmp_path / "seed.mjs"
        with running_server(env, tmp_path) as server:
            node_file.write_text(_adapt(NODE, server.base_url, key))
            commands = {
                "curl": ["bash", "-c", _adapt(CURL, server.base_url, key)],
                "python": [sys.executable, "-c", _adapt(PYTHON, server.base_url, key)],
                "node": ["node", str(node_file)],
            }
            sids = []
            for name, command in commands.items():
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=60, check=False
                )
                assert done.returncode == 0, (name, done.stderr)
                data = json.loads(done.stdout)["data"]
                assert (data["status"], data["party_a"], data["party_b"]) == (
                    "initiated",
                    "9876543210",
                    "9123456789",
                ), name
                sids.append(data["call_sid"])
            for sid in sids:
                call = ended_call(
                    server.base_url, sid, {"Authorization": f"Bearer {key}"}, within=30
                )
                assert (call["status"], call["hangup_cause"], call["price"]) == (
                    "completed",
                    "NORMAL_CLEARING",
                    1.5,
                )
