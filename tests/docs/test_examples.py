"""Issue 17: every example of the documentation site runs against a live ``maskline
serve``, so the docs cannot rot. The examples read the server and the key from
``MASKLINE_URL`` and ``MASKLINE_API_KEY`` (and a finished, recorded call's id from
``CALL_SID``), as a user's would; their text is run as written."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.docs.examples import (
    FAILS_WITH,
    NOT_AN_EXAMPLE,
    NOT_EXAMPLES,
    RUNNABLE,
    Block,
    Example,
    examples,
    site_blocks,
)
from tests.support.cli import run_cli
from tests.support.databases import fresh_database
from tests.support.server import free_port, running_server
from tests.support.waits import eventually_blocking

EXAMPLES = examples()
# curl as the examples' reader would have it set up to notice errors: a 4xx or 5xx
# fails the command (its body still printed), quietly but for the error itself.
CURLRC = "fail-with-body\nsilent\nshow-error\n"
TIMEOUT = 60
NODE_CLIENT = Path(__file__).resolve().parents[2] / "sdk" / "node"


@dataclass
class Site:
    """A live server with an organisation whose key the examples use."""

    env: dict[str, str]

    def run(self, example: Example, folder: Path) -> subprocess.CompletedProcess[str]:
        return run_block(example.block, example.runner, folder, self.env)


def run_block(
    block: Block, runner: str, folder: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    if runner == "shell":
        command = ["bash", "-eo", "pipefail", "-c", block.code]
    elif runner == "python":
        command = [sys.executable, "-c", block.code]
    else:
        # A module when it reads like one (import, top-level await), else CommonJS, as
        # node itself decides by the file's extension.
        module = "import " in block.code or "await " in block.code
        script = folder / ("example.mjs" if module else "example.cjs")
        # The Node client, as `npm install ./sdk/node` installs it (a link to the folder).
        installed = folder / "node_modules" / "maskline-client"
        if not installed.exists():
            installed.parent.mkdir(exist_ok=True)
            installed.symlink_to(NODE_CLIENT, target_is_directory=True)
        script.write_text(block.code)
        command = ["node", str(script)]
    return subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def _cli(env: dict[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    result = run_cli(*args, "--json", env=env, cwd=cwd)
    assert result.code == 0, result.stderr
    payload: dict[str, Any] = result.json
    return payload


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    # A database of its own: the server's engine and worker, up for the whole session,
    # would otherwise run the calls and deliver the webhooks of every other test here.
    tmp = tmp_path_factory.mktemp("site-examples")
    with fresh_database(tmp) as database_url:
        yield from _site(database_url, tmp)


def _site(database_url: str, tmp: Path) -> Iterator[Site]:
    port = free_port()
    server_env = {
        # Signed recording URLs name the server the examples reach.
        "MASKLINE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "MASKLINE_DATABASE_URL": database_url,
        "MASKLINE_SECRET_KEY": TEST_SECRET_KEY,
        "MASKLINE_DATA_DIR": str(tmp / "data"),
        "MASKLINE_SIM_RING_SEC": "0.1",
        "MASKLINE_SIM_TALK_SEC": "1",
    }
    with running_server(server_env, tmp, port=port) as server:
        name = f"docs-{uuid.uuid4().hex[:8]}"
        _cli(server_env, tmp, "org", "create", name, "--balance", "1000")
        pool = [f"91806{uuid.uuid4().int % 10**7:07d}" for _ in range(10)]
        _cli(server_env, tmp, "numbers", "add", *pool, "--org", name)
        key = str(
            _cli(server_env, tmp, "key", "create", "--org", name, "--rate-limit", "10000")[
                "api_key"
            ]
        )
        auth = {"Authorization": f"Bearer {key}"}
        created = httpx.post(
            f"{server.base_url}/v1/masking/calls",
            headers=auth,
            json={"party_a": "9876512345", "party_b": "9123412345"},
        )
        assert created.status_code == 201, created.text
        call_sid = created.json()["data"]["call_sid"]
        eventually_blocking(
            lambda: httpx.get(
                f"{server.base_url}/v1/masking/calls/{call_sid}", headers=auth
            ).json()["data"]["recording_status"],
            lambda status: status == "ready",
            what="the examples' call recorded",
            within=30,
        )
        home = tmp / "home"
        home.mkdir()
        (home / ".curlrc").write_text(CURLRC)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASKLINE_")}
        env.update(
            HOME=str(home),
            MASKLINE_URL=server.base_url,
            MASKLINE_API_KEY=key,
            CALL_SID=call_sid,
        )
        yield Site(env)


class TestEveryBlock:
    def test_every_block_is_an_example_or_says_what_it_is(self) -> None:
        for block in site_blocks():
            assert block.language in RUNNABLE.keys() | NOT_EXAMPLES, (
                f"{block.where}: say what this block is (sh, python, js, text, json, ini)"
            )
            if block.note is not None and block.language in RUNNABLE:
                assert NOT_AN_EXAMPLE.match(block.note) or FAILS_WITH.match(block.note), (
                    f"{block.where}: unknown note {block.note!r}"
                )

    def test_the_quick_start_has_the_first_call_in_curl_python_and_node(self) -> None:
        first = [e for e in EXAMPLES if e.block.page == "quickstart.md"]
        assert {e.runner for e in first} == {"shell", "python", "node"}
        assert all("/v1/masking/calls" in e.block.code for e in first if e.runner == "node")


def failure(example: Example, done: subprocess.CompletedProcess[str]) -> str | None:
    """Why ``example`` failed, or None."""
    if example.fails_with is None:
        ok = done.returncode == 0
    else:
        printed = done.stdout.replace(" ", "")
        ok = done.returncode != 0 and f'"code":"{example.fails_with}"' in printed
    if ok and (example.output is None or done.stdout == example.output):
        return None
    expected = "" if example.output is None else f"--- expected stdout\n{example.output}"
    return (
        f"{example.block.where} exited {done.returncode}\n{expected}"
        f"--- stdout\n{done.stdout}--- stderr\n{done.stderr}"
    )


class TestEveryExample:
    # One test for all, so that one server serves them (a test per example would start
    # a server in every xdist worker that draws one); the failures are listed together.
    def test_every_example_runs_as_written(self, site: Site, tmp_path: Path) -> None:
        failures = []
        for number, example in enumerate(EXAMPLES):
            folder = tmp_path / str(number)
            folder.mkdir()
            why = failure(example, site.run(example, folder))
            if why is not None:
                failures.append(why)
        assert failures == [], "\n\n".join(failures)
        assert len(EXAMPLES) >= 15


# Ways to break the quick start's examples: (language, text replaced, replacement).
BREAKAGES = [
    # a wrong path: curl's error answer fails the shell example
    ("sh", "/v1/masking/billing", "/v1/masking/billings"),
    # an invalid party: the client raises InvalidNumbers
    ("python", '"9123456789"', '"912345"'),
    # the same party twice: the fetch example throws on the 400
    ("js", '"9123456789"', '"9876543210"'),
    # the call runs but prints something else than its documented output
    ("python", "call.price)", "call.price, call.currency)"),
    # the example said to fail with invalid_numbers succeeds
    ("sh", '"+91 98765 43210"', '"9123456789"'),
]


class TestTheRunnerFails:
    def test_a_broken_quick_start_example_is_reported(self, site: Site, tmp_path: Path) -> None:
        for number, (language, before, after) in enumerate(BREAKAGES):
            example = next(
                e
                for e in EXAMPLES
                if e.block.page == "quickstart.md"
                and e.block.language == language
                and before in e.block.code
            )
            block = example.block
            broken = dataclasses.replace(
                example,
                block=dataclasses.replace(block, code=block.code.replace(before, after)),
            )
            folder = tmp_path / str(number)
            folder.mkdir()
            assert failure(example, site.run(example, folder)) is None, (language, before)
            assert failure(broken, site.run(broken, folder)) is not None, (language, before)
