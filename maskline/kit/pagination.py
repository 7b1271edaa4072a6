"""``page`` / ``per_page`` query parameters and the list ``meta`` (SPEC §3)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from pydantic import BaseModel

MAX_PER_PAGE = 100


class Page(BaseModel):
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


class PageMeta(BaseModel):
    page: int
    per_page: int
    total: int
    total_pages: int
    has_more: bool

    @classmethod
    def build(cls, page: Page, total: int) -> PageMeta:
        total_pages = -(-total // page.per_page)
        return cls(
            page=page.page,
            per_page=page.per_page,
            total=total,
            total_pages=total_pages,
            has_more=page.page < total_pages,
        )


def _page(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")] = 1,
    per_page: Annotated[
        int, Query(ge=1, le=MAX_PER_PAGE, description="Items per page, 1 to 100.")
    ] = 20,
) -> Page:
    return Page(page=page, per_page=per_page)


PageDep = Annotated[Page, Depends(_page)]
