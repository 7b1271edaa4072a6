"""The documentation site (``make docs``, mkdocs.yml) served at ``/docs/guide/``."""

from __future__ import annotations

from pathlib import Path

import anyio
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

GUIDE_PATH = "/docs/guide"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>maskline: documentation not built</title>
</head><body>
<h1>The documentation site is not built</h1>
<p>Build it from a checkout of maskline with <code>make docs</code> (into
<code>site/</code>, or set <code>MASKLINE_DOCS_SITE_DIR</code> to where it is), then
reload this page. The interactive API reference is at <a href="/docs">/docs</a>.</p>
</body></html>
"""


class GuideSite(StaticFiles):
    """The built site's files. Before it is built, every path answers 404 with a short
    page saying how to build it; whether it is built is looked at on each request, so a
    site built while the server runs is served at once. A page missing from a built site
    gets the site's own 404 page (``html=True``)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self._index = directory / "index.html"

    async def check_config(self) -> None:
        # A site not built yet is no configuration error: get_response answers for it.
        if await anyio.Path(self._index).parent.is_dir():
            await super().check_config()

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as missing:
            if missing.status_code == 404 and not await anyio.Path(self._index).is_file():
                return HTMLResponse(NOT_BUILT, status_code=404)
            raise
