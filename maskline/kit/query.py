"""Query-string rules shared by every route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from starlette.requests import Request

from maskline.errors import InvalidRequest
from maskline.kit.daterange import DateRange, parse_date_range
from maskline.kit.pagination import MAX_PER_PAGE, Page


def reject_repeated_parameters(request: Request) -> None:
    """Every query parameter of this API takes one value (``status`` lists are
    comma-separated): a repeated one is refused instead of silently keeping the last."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            raise InvalidRequest(f"{name} must be given once.")
        seen.add(name)


def _page(
    request: Request,
    page: Annotated[
        int,
        Query(
            ge=1,
            le=1_000_000,
            description="Page number, from 1, within the first 10,000 rows (then use cursor).",
        ),
    ] = 1,
    per_page: Annotated[
        int, Query(ge=1, le=MAX_PER_PAGE, description="Items per page, 1 to 100.")
    ] = 20,
    cursor: Annotated[
        str,
        Query(min_length=1, max_length=200, description="meta.next_cursor of the previous page."),
    ] = "",
) -> Page:
    if cursor:
        if "page" in request.query_params:
            raise InvalidRequest("Give page or cursor, not both.")
        return Page(page=None, per_page=per_page, cursor=cursor)
    return Page(page=page, per_page=per_page)


PageDep = Annotated[Page, Depends(_page)]


DateParam = Annotated[str | None, Query(max_length=40)]


def _date_range(
    start_date: DateParam = None,
    end_date: DateParam = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: DateParam = None,
) -> DateRange:
    """``start_date``/``end_date`` (aliases ``from``/``to``) as query parameters."""
    return parse_date_range(
        start_date if start_date is not None else from_,
        end_date if end_date is not None else to,
    )


DateRangeDep = Annotated[DateRange, Depends(_date_range)]
