"""SPEC §9: every operator command, given bad input, exits non-zero with exactly one
line on stderr (no traceback), prints nothing on stdout, and stores nothing. The
commands are read from the click groups, so a new command fails this file until it
has a bad-input case here."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest
from sqlalchemy import select

from maskline.cli.main import cli as maskline_cli
from maskline.kit.db import Database
from maskline.tables import metadata
from tests.conftest import Cli
from tests.support.cli import CliResult, run_cli

ORG = "adv-cli"  # created with a key and a number, without a webhook URL

# command → [(arguments after the command, the exact line on stderr after "error: ")]
CASES: dict[tuple[str, ...], list[tuple[list[str], str]]] = {
    ("serve",): [
        (["--port", "0"], "Invalid value for '--port': 0 is not in the range 1<=x<=65535."),
    ],
    ("migrate",): [
        (["--revision", "x"], "No such option '--revision'. Did you mean '--json'?"),
    ],
    ("org", "create"): [
        (["adv-bad", "--gstin", "27AAPFU0939F1ZW"], "GSTIN check character does not verify."),
        (
            ["adv-bad", "--balance", "1e30"],
            "--balance: '1e30' is more than the largest amount, Rs 1000000000.",
        ),
        (["adv\nbad"], "name must be 1 to 100 printable characters."),
        ([ORG], f"An organisation named '{ORG}' already exists."),
    ],
    ("org", "update"): [
        (["no\nsuch", "--pulse-sec", "30"], "No organisation with id or name 'no\\nsuch'."),
        ([ORG, "--state", "77"], "'77' is not a valid GST state code (01–38 or 97)."),
    ],
    ("org", "list"): [(["--org", ORG], "No such option '--org'.")],
    ("key", "create"): [
        (["--org", ORG, "--rate-limit", "0"], "--rate-limit must be between 1 and 1000000."),
        ([], "Missing option '--org'."),
    ],
    ("key", "list"): [(["--org", "nope"], "No organisation with id or name 'nope'.")],
    ("user", "create"): [
        (
            ["--org", ORG, "--email", "a@example.com", "--role", "admin"],
            "role must be one of owner, developer, billing.",
        ),
        (
            ["--org", ORG, "--email", "not an email"],
            "email must be an email address, like you@example.com.",
        ),
        (["--org", "nope", "--email", "a@example.com"], "No organisation with id or name 'nope'."),
    ],
    ("user", "invite"): [
        (
            ["--org", ORG, "--email", "a@example.com", "--role", "admin"],
            "role must be one of owner, developer, billing.",
        ),
        (
            ["--org", ORG, "--email", "not an email"],
            "email must be an email address, like you@example.com.",
        ),
        (["--org", "nope", "--email", "a@example.com"], "No organisation with id or name 'nope'."),
    ],
    ("user", "list"): [(["--org", "nope"], "No organisation with id or name 'nope'.")],
    ("user", "remove"): [
        (
            ["--org", ORG, "--email", "ghost@example.com"],
            "No member with email 'ghost@example.com' in this organisation.",
        ),
    ],
    ("key", "revoke"): [(["key\nnope"], "No API key with id 'key\\nnope'.")],
    ("wallet", "topup"): [
        (["--org", ORG, "abc"], "RUPEES: 'abc' is not an amount in rupees."),
        (["--org", ORG, "5"], "amount must be at least Rs 10 before GST."),
        (
            ["--org", ORG, "99999999999999999999"],
            "RUPEES: '99999999999999999999' is more than the largest amount, Rs 1000000000.",
        ),
    ],
    ("wallet", "show"): [(["--org", "nope"], "No organisation with id or name 'nope'.")],
    ("numbers", "add"): [
        # The valid first number is not added either: one command, one transaction.
        (
            ["918089000001", "9876543210"],
            "'9876543210' is not a masked number: write 12 digits with country code 91.",
        ),
        ([], "Missing argument 'NUMBER...'."),
    ],
    ("numbers", "list"): [(["--org", "nope"], "No organisation with id or name 'nope'.")],
    ("numbers", "remove"): [(["918089009999"], "918089009999 is not in the pool.")],
    ("webhook", "set"): [
        (
            ["--org", ORG, "--url", "https://10.0.0.1/h"],
            "webhook_url must not point to a private or reserved address (10.0.0.1).",
        ),
        (["--org", ORG, "--url", "https://[::1"], "webhook_url is not a valid URL."),
    ],
    ("webhook", "show"): [(["--org", "nope"], "No organisation with id or name 'nope'.")],
    ("webhook", "test"): [
        (["--org", ORG], "This organisation has no webhook URL: run 'webhook set'."),
    ],
    ("webhook", "rotate-secret"): [
        (["--org", "nope"], "No organisation with id or name 'nope'."),
    ],
    ("webhook", "deliveries"): [
        (
            ["--org", ORG, "--status", "done"],
            "Invalid value for '--status': 'done' is not one of "
            "'pending', 'succeeded', 'failed', 'paused'.",
        ),
    ],
    ("webhook", "replay"): [(["dlv_nope"], "No webhook delivery with this id.")],
    ("calls", "seed"): [
        (
            ["--org", ORG, "--count", "5"],
            f"{ORG} is a live organisation: seed only a sandbox one, or give --force.",
        ),
        (["--org", "nope", "--count", "5"], "No organisation with id or name 'nope'."),
        (
            ["--org", ORG, "--count", "0"],
            "Invalid value for '--count': 0 is not in the range 1<=x<=10000000.",
        ),
        (["--org", ORG], "Missing option '--count'."),
    ],
    ("calls", "show"): [
        (
            ["3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"],
            "No call with call_sid '3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b'.",
        ),
    ],
}
# Not input but the setting under it: a database that cannot be opened.
BROKEN_DATABASE = {"MASKLINE_DATABASE_URL": "sqlite:////nonexistent-dir/maskline.db"}
ENV_CASES: list[tuple[list[str], dict[str, str], str]] = [
    (["migrate"], BROKEN_DATABASE, "the database cannot be reached or used: "),
]


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


async def _fingerprint(url: str) -> dict[str, str]:
    """Every table's rows, hashed: any insert, update or delete changes one."""
    db = Database(url, pool_size=1)
    try:
        async with db.read() as session:
            hashes = {}
            for table in metadata.sorted_tables:
                rows = (await session.execute(select(table))).all()
                text = "\n".join(sorted(repr(tuple(row)) for row in rows))
                hashes[table.name] = hashlib.sha256(text.encode()).hexdigest()
            return hashes
    finally:
        await db.dispose()


Case = tuple[tuple[str, ...], tuple[str, ...]]


@pytest.fixture(scope="module")
def outcomes(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[Case, CliResult], dict[str, str], dict[str, str]]:
    """Run every bad case once (a few at a time), with the database's state before and after."""
    cwd = tmp_path_factory.mktemp("cli-bad-input")
    env = {
        "MASKLINE_DATABASE_URL": database_url,
        "MASKLINE_SECRET_KEY": "test-secret-key-not-for-production",
        "MASKLINE_DATA_DIR": str(cwd / "data"),
    }
    Cli(env, cwd).ok("org", "create", ORG)
    before = asyncio.run(_fingerprint(database_url))
    runs: dict[Case, tuple[list[str], dict[str, str]]] = {}
    for command, cases in CASES.items():
        for args, _ in cases:
            # Every command but serve takes --json (SPEC §9).
            json = [] if command == ("serve",) else ["--json"]
            runs[(command, tuple(args))] = ([*command, *args, *json], env)
    for args, extra, _ in ENV_CASES:
        runs[(tuple(args), ("env",))] = ([*args, "--json"], {**env, **extra})
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            case: pool.submit(run_cli, *argv, env=case_env, cwd=cwd)
            for case, (argv, case_env) in runs.items()
        }
        results = {case: future.result() for case, future in futures.items()}
    return results, before, asyncio.run(_fingerprint(database_url))


def _assert_one_line_error(result: CliResult) -> str:
    assert result.code != 0, result.stdout
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.endswith("\n"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    return result.stderr.removeprefix("error: ").removesuffix("\n")


class TestBadInput:
    def test_every_command_has_bad_input_cases(self) -> None:
        assert set(leaf_commands(maskline_cli)) == set(CASES)

    @pytest.mark.parametrize(
        ("command", "args", "message"),
        [(command, args, message) for command, cases in CASES.items() for args, message in cases],
        ids=lambda value: " ".join(value) if isinstance(value, tuple) else None,
    )
    def test_is_one_line_on_stderr_and_a_non_zero_exit(
        self,
        outcomes: tuple[dict[Case, CliResult], dict[str, str], dict[str, str]],
        command: tuple[str, ...],
        args: list[str],
        message: str,
    ) -> None:
        results, _, _ = outcomes
        assert _assert_one_line_error(results[(command, tuple(args))]) == message

    @pytest.mark.parametrize(("args", "extra", "prefix"), ENV_CASES)
    def test_an_unusable_database_is_one_line_too(
        self,
        outcomes: tuple[dict[Case, CliResult], dict[str, str], dict[str, str]],
        args: list[str],
        extra: dict[str, str],
        prefix: str,
    ) -> None:
        results, _, _ = outcomes
        assert _assert_one_line_error(results[(tuple(args), ("env",))]).startswith(prefix)

    def test_nothing_is_stored(
        self, outcomes: tuple[dict[Case, CliResult], dict[str, str], dict[str, str]]
    ) -> None:
        _, before, after = outcomes
        changed = sorted(name for name in before if before[name] != after[name])
        assert changed == []


def test_the_state_is_compared_across_every_table(database_url: str, tmp_path: Path) -> None:
    # The fingerprint sees a change the CLI makes (so "nothing stored" can fail).
    before = asyncio.run(_fingerprint(database_url))
    env = {
        "MASKLINE_DATABASE_URL": database_url,
        "MASKLINE_SECRET_KEY": "test-secret-key-not-for-production",
        "MASKLINE_DATA_DIR": str(tmp_path / "data"),
    }
    Cli(env, tmp_path).ok("org", "update", ORG, "--pulse-sec", "30")
    after = asyncio.run(_fingerprint(database_url))
    assert sorted(name for name in before if before[name] != after[name]) == ["organisations"]
