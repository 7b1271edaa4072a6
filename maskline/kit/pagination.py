"""A list's ``page`` / ``per_page`` and its ``meta`` (SPEC §3); the query parameters
themselves are read in ``maskline.kit.query``."""

from __future__ import annotations

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
