"""SPEC §9: the first ``maskline serve`` on an empty database creates the sandbox once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from tests.support.cli import run_cli
from tests.support.databases import KIND, fresh_database
from tests.support.server import running_server

KEY = re.compile(r"vp_test_[A-Za-z0-9]{38}")


class TestSandboxBootstrap:
    @pytest.mark.database
    def test_first_serve_prints_a_working_key_and_the_second_prints_none(
        self, tmp_path: Path
    ) -> None:
        with fresh_database(tmp_path, migrate=False) as url:
            # Only the embedded SQLite mode migrates by itself; PostgreSQL is the operator's job.
            env = {"MASKLINE_DATABASE_URL": url, "MASKLINE_DATA_DIR": str(tmp_path / "data")}
            if KIND == "postgresql":
                env["MASKLINE_SECRET_KEY"] = "sandbox-test-secret-of-32-bytes-or-more"
                assert run_cli("migrate", env=env, cwd=tmp_path).code == 0
            with running_server(env, tmp_path) as server:
                output = server.output_when(lambda out: "curl -H" in out)
                keys = KEY.findall(output)
                assert len(keys) == 2, output  # the key, and again in the curl line
                assert keys[0] == keys[1]
                assert f'curl -H "Authorization: Bearer {keys[0]}"' in output
                billing = httpx.get(
                    f"{server.base_url}/v1/masking/billing",
                    headers={"Authorization": f"Bearer {keys[0]}"},
                )
                assert billing.status_code == 200
                assert billing.json()["data"]["balance"] == 500
                ready = httpx.get(f"{server.base_url}/readyz")
                assert ready.json() == {
                    "status": "ready",
                    "checks": {"database": "ok", "migrations": "ok", "carrier": "ok"},
                }
            numbers = run_cli("numbers", "list", "--json", env=env, cwd=tmp_path)
            assert [n["number"] for n in json.loads(numbers.stdout)["numbers"]] == [
                "917969002801",
                "917969002802",
                "917969002803",
            ]
            with running_server(env, tmp_path) as again:
                assert KEY.findall(again.output) == []
                assert httpx.get(f"{again.base_url}/healthz").json() == {"status": "ok"}

    def test_embedded_mode_generates_its_secret_key_into_the_data_dir(self, tmp_path: Path) -> None:
        env = {"MASKLINE_DATA_DIR": str(tmp_path / "data")}
        created = run_cli("org", "create", "secret-gen", "--json", env=env, cwd=tmp_path)
        assert created.code == 0, created.stderr
        key_file = tmp_path / "data" / "secret_key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert len(key_file.read_text()) >= 64
        assert (tmp_path / "maskline.db").exists()
