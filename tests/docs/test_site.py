"""Issue 17: the documentation site builds with ``mkdocs build --strict`` (a broken link
or a page missing from the nav fails it), and its API reference is rendered from the
document the app serves, examples included."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def build(site: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASKLINE_")}
    env["NO_MKDOCS_2_WARNING"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class TestSite:
    def test_the_site_builds_strictly_with_the_reference_from_the_app(self, tmp_path: Path) -> None:
        site = tmp_path / "site"
        done = build(site)
        assert done.returncode == 0, done.stdout + done.stderr
        pages = ["", "quickstart/", "concepts/", "reference/", "webhooks/", "sdks/"]
        pages += ["portal/", "sip/", "operations/", "benchmarks/", "decisions/"]
        for page in pages:
            assert (site / page / "index.html").is_file(), page
        served = json.loads((site / "openapi.json").read_text())
        assert served["paths"]["/v1/masking/calls"]["post"]["operationId"] == (
            "create_call_v1_masking_calls_post"
        )
        reference = (site / "reference" / "index.html").read_text()
        for path, operations in served["paths"].items():
            shown = re.sub(r"(\{[a-z_]+\})", r'<span class="route-param">\1</span>', path)
            for method in operations:
                assert f"{method.upper()}</span> {shown}<a " in reference, (method, path)
        # The examples reach the page: the seed's message for A == B.
        assert "Party A and Party B cannot be the same number." in reference

    def test_a_broken_link_fails_the_build(self, tmp_path: Path) -> None:
        """mkdocs.yml's own settings (strict, validation, theme, extensions) on a page
        with a broken link: the build fails (the site's hook and reference left out,
        so this takes a second, not the whole site's build)."""
        config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
        config.pop("hooks")
        config["plugins"] = ["search"]
        config["nav"] = [{"Home": "index.md"}]
        config["docs_dir"] = str(tmp_path / "docs")
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "index.md").write_text("# Home\n\nSee [nowhere](no-such-page.md).\n")
        (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
        done = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
            cwd=tmp_path,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "'no-such-page.md', but the target is not found" in done.stderr
