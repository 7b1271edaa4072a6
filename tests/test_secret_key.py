"""SPEC §10: ``MASKLINE_SECRET_KEY`` is at least 32 bytes, else maskline refuses to start
(one line on stderr, a non-zero exit); the embedded mode generates one into the data
dir, written whole (atomically) with mode 0600."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import CliResult, run_cli
from tests.support.server import free_port

SHORT = "error: MASKLINE_SECRET_KEY must be at least 32 bytes; it is {n}.\n"
SHORT_FILE = (
    "error: {path} holds a secret key of {n} bytes, fewer than 32 (a write cut short?). "
    "Delete it to generate a new one.\n"
)


def serve(env: dict[str, str], cwd: Path) -> CliResult:
    """``maskline serve``, which must exit by itself (a server that starts is a failure)."""
    return run_cli("serve", "--port", str(free_port()), env=env, cwd=cwd)


class TestSecretKeyLength:
    @pytest.mark.parametrize("key", ["", "k", "x" * 31, "é" * 15])
    def test_serve_refuses_a_key_under_32_bytes(self, tmp_path: Path, key: str) -> None:
        env = {
            "MASKLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
            "MASKLINE_DATA_DIR": str(tmp_path / "data"),
            "MASKLINE_SECRET_KEY": key,
        }
        if not key:
            # Empty is "unset" for the embedded mode (it generates one); PostgreSQL needs one.
            env["MASKLINE_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
        done = serve(env, tmp_path)
        expected = (
            "error: MASKLINE_SECRET_KEY is required with PostgreSQL (the same value in every "
            "process)\n"
            if not key
            else SHORT.format(n=len(key.encode()))
        )
        assert (done.code, done.stderr) == (1, expected)

    def test_a_key_of_32_bytes_is_enough(self, tmp_path: Path) -> None:
        env = {
            "MASKLINE_DATA_DIR": str(tmp_path / "data"),
            "MASKLINE_SECRET_KEY": "é" * 16,
        }
        created = run_cli("org", "create", "key-32", "--json", env=env, cwd=tmp_path)
        assert (created.code, created.stderr) == (0, "")

    def test_a_cli_command_refuses_a_short_key_too(self, tmp_path: Path) -> None:
        env = {"MASKLINE_DATA_DIR": str(tmp_path / "data"), "MASKLINE_SECRET_KEY": "short"}
        created = run_cli("org", "create", "key-short", "--json", env=env, cwd=tmp_path)
        assert (created.code, created.stdout, created.stderr) == (1, "", SHORT.format(n=5))


class TestGeneratedKeyFile:
    @pytest.mark.parametrize("content", ["", "\n", "half-written"])
    def test_serve_refuses_a_key_file_under_32_bytes(self, tmp_path: Path, content: str) -> None:
        # What a crash between creating the file and writing it leaves behind.
        data = tmp_path / "data"
        data.mkdir()
        key_file = data / "secret_key"
        key_file.write_text(content)
        done = serve({"MASKLINE_DATA_DIR": str(data)}, tmp_path)
        assert (done.code, done.stderr) == (
            1,
            SHORT_FILE.format(path=key_file, n=len(content.strip())),
        )
        assert key_file.read_text() == content

    def test_the_generated_file_is_whole_private_and_alone(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        env = {"MASKLINE_DATA_DIR": str(data)}
        first = run_cli("org", "create", "gen-1", "--json", env=env, cwd=tmp_path)
        assert (first.code, first.stderr) == (0, "")
        # Nothing but the key file: no temporary file is left beside it.
        assert [p.name for p in data.iterdir()] == ["secret_key"]
        key_file = data / "secret_key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text()
        assert len(key.encode()) >= 32
        # The next process uses the same key (the webhook secret it stored decrypts).
        shown = run_cli("webhook", "show", "--org", "gen-1", "--json", env=env, cwd=tmp_path)
        assert (shown.code, shown.stderr) == (0, "")
        assert key_file.read_text() == key
