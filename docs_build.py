"""MkDocs hook (mkdocs.yml): writes docs/openapi.json from the app before each build, so
the API reference page renders the document the server itself serves at /openapi.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OPENAPI = Path(__file__).parent / "docs" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    # Imported here, not at module level: building the app is the build's work, not the
    # import's. create_app opens nothing; only its lifespan would.
    from maskline.app import create_app
    from maskline.settings import Settings

    document: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    return document


def on_pre_build(config: Any) -> None:
    text = json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"
    if not OPENAPI.exists() or OPENAPI.read_text() != text:
        OPENAPI.write_text(text)
