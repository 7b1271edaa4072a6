"""Issue 17: ``maskline serve`` serves the documentation site at /docs/guide/ once it has
been built (a 404 page saying how to build it before), and /docs stays the interactive
OpenAPI page."""

from __future__ import annotations

from pathlib import Path

from maskline.kit.guide import NOT_BUILT
from tests.conftest import make_settings
from tests.support.api import running_api

INDEX = "<!doctype html><title>maskline docs</title><h1>maskline</h1>\n"
QUICKSTART = "<!doctype html><title>Quick start</title>\n"
SITE_404 = "<!doctype html><title>Not found</title><p>No such page.</p>\n"


def build_site(site: Path) -> None:
    """What mkdocs leaves in site_dir, in small: directory URLs, a 404 page, assets."""
    (site / "quickstart").mkdir(parents=True)
    (site / "assets").mkdir()
    (site / "index.html").write_text(INDEX)
    (site / "quickstart" / "index.html").write_text(QUICKSTART)
    (site / "404.html").write_text(SITE_404)
    (site / "assets" / "site.css").write_text("body { margin: 0 }\n")


class TestGuide:
    async def test_the_built_site_is_served_at_docs_guide(
        self, database_url: str, tmp_path: Path
    ) -> None:
        build_site(tmp_path / "site")
        settings = make_settings(database_url, tmp_path / "data", docs_site_dir=tmp_path / "site")
        async with running_api(settings) as api:
            home = await api.client.get("/docs/guide/")
            page = await api.client.get("/docs/guide/quickstart/")
            css = await api.client.get("/docs/guide/assets/site.css")
            bare = await api.client.get("/docs/guide")
            missing = await api.client.get("/docs/guide/no-such-page/")
        assert (home.status_code, home.headers["content-type"], home.text) == (
            200,
            "text/html; charset=utf-8",
            INDEX,
        )
        assert (page.status_code, page.text) == (200, QUICKSTART)
        assert (css.status_code, css.headers["content-type"], css.text) == (
            200,
            "text/css; charset=utf-8",
            "body { margin: 0 }\n",
        )
        assert (bare.status_code, bare.headers["location"]) == (
            307,
            "http://testserver/docs/guide/",
        )
        assert (missing.status_code, missing.text) == (404, SITE_404)

    async def test_before_it_is_built_docs_guide_says_how_to_build_it(
        self, database_url: str, tmp_path: Path
    ) -> None:
        site = tmp_path / "site"
        settings = make_settings(database_url, tmp_path / "data", docs_site_dir=site)
        async with running_api(settings) as api:
            home = await api.client.get("/docs/guide/")
            page = await api.client.get("/docs/guide/quickstart/")
            # Built while the server runs: served from the next request on.
            build_site(site)
            built = await api.client.get("/docs/guide/")
        assert (home.status_code, home.headers["content-type"], home.text) == (
            404,
            "text/html; charset=utf-8",
            NOT_BUILT,
        )
        assert "make docs" in NOT_BUILT
        assert (page.status_code, page.text) == (404, NOT_BUILT)
        assert (built.status_code, built.text) == (200, INDEX)

    async def test_docs_stays_the_interactive_openapi_page(
        self, database_url: str, tmp_path: Path
    ) -> None:
        build_site(tmp_path / "site")
        settings = make_settings(database_url, tmp_path / "data", docs_site_dir=tmp_path / "site")
        async with running_api(settings) as api:
            docs = await api.client.get("/docs")
            document = await api.client.get("/openapi.json")
        assert docs.status_code == 200
        assert "swagger-ui" in docs.text
        assert "/openapi.json" in docs.text
        assert document.json()["info"]["title"] == "maskline"
