"""The Node client library (sdk/node) against a real ``maskline serve``: its ``node --test``
suite (its README's masked call included), and its types against the served OpenAPI
document."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.sdk.node_package import LIB, NODE_DIR, TYPES, built, generated_types, openapi_document
from tests.sdk.proxy import dropping_proxy
from tests.sdk.stack import Stack, sdk_stack
from tests.support.databases import fresh_database

# The suite and the type generator run node as a process.
pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("sdk-node")
    # The recordings proxy cuts its first connection 1,000 bytes into the answer: the
    # suite's first recording download has to resume. A database of its own
    # (tests/sdk/stack.py).
    with (
        fresh_database(tmp) as database_url,
        sdk_stack(database_url, tmp, recording_cuts={0: 1000}) as started,
    ):
        yield started


@pytest.fixture(scope="module")
def node_build() -> Path:
    return built()


def _node(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    plain = {k: v for k, v in os.environ.items() if not k.startswith(("MASKLINE_", "NODE_"))}
    return subprocess.run(
        ["node", *args, str(script)],
        env={**plain, **env},
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


class TestNodeClient:
    def test_the_node_suite_passes_against_a_real_server(
        self, stack: Stack, node_build: Path
    ) -> None:
        keys = {"calls": stack.org()}
        webhook_secret = stack.webhook_secret
        others = {
            "drop": (),
            "paging": ("--max-live-calls", "1000"),
            "limited": ("--max-live-calls", "1"),
            "poor": ("--balance", "0"),
            "account": (),
            "readme": (),
        }
        # Three CLI commands each: three organisations at a time.
        with ThreadPoolExecutor(3) as pool:
            made = pool.map(lambda extra: stack.org(*extra), others.values())
            keys.update(zip(others, made, strict=True))
        # The first connection reaches the server, which places the call, but its answer
        # never reaches the client.
        with dropping_proxy(stack.port, {0: 0}) as drop:
            info = {
                "baseUrl": stack.base_url,
                "dropUrl": drop.url,
                "keys": keys,
                "webhookSecret": webhook_secret,
            }
            done = _node(
                node_build / "test" / "client.test.js",
                {"MASKLINE_TEST_STACK": json.dumps(info)},
                "--test",
                "--test-reporter=spec",
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert drop.connections == 2
        # The first download was cut, so it took a second connection to finish.
        assert stack.recordings_proxy.connections >= 2


class TestNodeBuild:
    def test_the_committed_lib_is_the_compiled_src(self, node_build: Path) -> None:
        compiled = {p.name: p.read_bytes() for p in (node_build / "src").iterdir()}
        committed = {p.name: p.read_bytes() for p in LIB.iterdir()}
        assert sorted(committed) == sorted(compiled)
        stale = [name for name in sorted(compiled) if compiled[name] != committed[name]]
        assert stale == [], "sdk/node/lib is stale: npm run build (in sdk/node)"

    def test_the_committed_types_are_generated_from_the_served_document(self) -> None:
        generated = generated_types(openapi_document())
        assert generated == TYPES.read_text(), "src/openapi.ts is stale: make sdk-node-types"
