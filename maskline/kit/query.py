"""Query-string rules shared by every route."""

from __future__ import annotations

from starlette.requests import Request

from maskline.errors import InvalidRequest


def reject_repeated_parameters(request: Request) -> None:
    """Every query parameter of this API takes one value (``status`` lists are
    comma-separated): a repeated one is refused instead of silently keeping the last."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            raise InvalidRequest(f"{name} must be given once.")
        seen.add(name)
