"""One page helper for the API's lists (SPEC §3: call-logs, invoices, deliveries).

A list is ordered newest first by (a creation time, a unique key). A page is found
either by ``page`` (an offset, allowed within the first 10,000 rows only) or by an
opaque ``cursor`` (keyset: the rows after the position of the last row the client
saw, at the same cost at any depth, and stable while new rows arrive). ``total`` is a
maintained count when the caller has one (an unfiltered call-logs list), otherwise it
is counted up to ``TOTAL_CAP`` rows and flagged as capped when it reaches it.

A filter may be a union of several index-ordered queries (one per status, or one per
side of a call for a party): each branch is ordered and limited on its own, then the
branches are merged, so no branch reads more than one page past the offset.

The query parameters themselves are read in ``maskline.kit.query``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, func, literal, select, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from maskline.errors import InvalidRequest

MAX_PER_PAGE = 100
# ``page × per_page`` may reach this; deeper rows are reached by cursor (SPEC §3).
MAX_PAGED_ROWS = 10_000
# A filtered list's total is counted up to here (SPEC §3).
TOTAL_CAP = 10_000
_CURSOR_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Row = TypeVar("Row")


class Page(BaseModel):
    """What the client asked for: ``page`` (None with a cursor) or ``cursor``."""

    page: int | None = 1
    per_page: int = 20
    cursor: str | None = None

    @property
    def offset(self) -> int:
        return ((self.page or 1) - 1) * self.per_page


class PageMeta(BaseModel):
    page: int | None
    per_page: int
    total: int
    total_pages: int
    has_more: bool
    next_cursor: str | None
    total_capped: bool = False

    @classmethod
    def build(
        cls, page: Page, total: int, *, has_more: bool, next_cursor: str | None, capped: bool
    ) -> PageMeta:
        return cls(
            page=page.page,
            per_page=page.per_page,
            total=total,
            total_pages=-(-total // page.per_page),
            has_more=has_more,
            next_cursor=next_cursor,
            total_capped=capped,
        )


@dataclass(frozen=True, slots=True)
class Listing(Generic[Row]):
    """One list's order: newest first by ``created`` then ``key`` (unique), over
    ``model``; ``name`` tells its cursors from another list's, ``noun`` names its rows
    in the message that sends deep ``page`` requests to the cursor."""

    model: type[Row]
    created: InstrumentedAttribute[datetime]
    key: InstrumentedAttribute[Any]
    name: str
    noun: str


@dataclass(frozen=True, slots=True)
class Paged(Generic[Row]):
    rows: list[Row]
    meta: PageMeta


def _fingerprint(listing: Listing[Any], filters: Mapping[str, object], at: int, key: Any) -> str:
    text = json.dumps([listing.name, dict(sorted(filters.items())), at, key], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _micros(at: datetime) -> int:
    if at.tzinfo is None:  # SQLite gives back naive UTC
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // timedelta(microseconds=1)


def encode_cursor(listing: Listing[Any], filters: Mapping[str, object], row: Any) -> str:
    """The position just after ``row``, bound to ``listing`` and these ``filters``."""
    at = _micros(getattr(row, listing.created.key))
    key = getattr(row, listing.key.key)
    payload = [_CURSOR_VERSION, at, key, _fingerprint(listing, filters, at, key)]
    text = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode()


def decode_cursor(
    listing: Listing[Any], filters: Mapping[str, object], cursor: str
) -> tuple[datetime, Any]:
    """The (time, key) a cursor of this list with these filters points after; 400 for
    anything else (another list's, other filters', edited or made up)."""
    refused = InvalidRequest("cursor is not a cursor of this list with these filters.")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, at, key, check = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise refused from None
    valid = (
        version == _CURSOR_VERSION
        and type(at) is int
        and type(key) in (int, str)
        and check == _fingerprint(listing, filters, at, key)
    )
    if not valid:
        raise refused
    try:
        return _EPOCH + timedelta(microseconds=at), key
    except OverflowError:
        raise refused from None


def check_page(page: Page, *, noun: str) -> None:
    """``page`` reaches the first ``MAX_PAGED_ROWS`` rows only (SPEC §3)."""
    if page.page is not None and page.page * page.per_page > MAX_PAGED_ROWS:
        raise InvalidRequest(f"Use cursor to page beyond the first {MAX_PAGED_ROWS:,} {noun}.")


async def page_of(
    session: AsyncSession,
    listing: Listing[Row],
    branches: Sequence[Select[Any]],
    page: Page,
    *,
    filters: Mapping[str, object],
    total: int | None = None,
) -> Paged[Row]:
    """The page of rows of ``listing`` that ``branches`` (the organisation's filtered
    queries of the model; their union is the list) hold, with its ``meta``.

    ``total`` is the list's exact size when the caller keeps one; otherwise it is
    counted here, up to ``TOTAL_CAP``.
    """
    check_page(page, noun=listing.noun)
    created, key = listing.created, listing.key
    order = (created.desc(), key.desc())
    if page.cursor is not None:
        at, after = decode_cursor(listing, filters, page.cursor)
        position = tuple_(literal(at, created.type), literal(after, key.type))
        fetched = [b.where(tuple_(created, key) < position) for b in branches]
        offset = 0
    else:
        fetched = list(branches)
        offset = page.offset
    wanted = page.per_page + 1
    if len(fetched) == 1:
        query = fetched[0].order_by(*order).offset(offset).limit(wanted)
    else:
        # Each branch reads no more than the page needs, and only its index (the time
        # and the key); the merge orders them and the page's rows are then read by key.
        # Two columns to merge, not the model's every column: an ORM alias of a union
        # of whole rows cost more to build in Python than the database took to run it.
        merged = union_all(
            *(
                b.with_only_columns(created, key)
                .order_by(*order)
                .limit(offset + wanted)
                .subquery()
                .select()
                for b in fetched
            )
        ).subquery()
        picked = (
            select(merged.c[1])
            .order_by(merged.c[0].desc(), merged.c[1].desc())
            .offset(offset)
            .limit(wanted)
        )
        query = select(listing.model).where(key.in_(picked.scalar_subquery())).order_by(*order)
    found = list((await session.execute(query)).scalars())
    rows, has_more = found[: page.per_page], len(found) > page.per_page
    next_cursor = encode_cursor(listing, filters, rows[-1]) if has_more else None
    capped = False
    if total is None:
        total = await _count_capped(session, branches, order)
        capped = total >= TOTAL_CAP
    meta = PageMeta.build(page, total, has_more=has_more, next_cursor=next_cursor, capped=capped)
    return Paged(rows, meta)


async def _count_capped(
    session: AsyncSession, branches: Sequence[Select[Any]], order: Sequence[Any]
) -> int:
    """The rows of the branches' union, counted up to ``TOTAL_CAP``: each branch read in
    the list's order (its index, which it leaves after ``TOTAL_CAP`` entries)."""
    limited = [
        b.with_only_columns(literal(1).label("one")).order_by(*order).limit(TOTAL_CAP)
        for b in branches
    ]
    inner = limited[0] if len(limited) == 1 else union_all(*(select(q.subquery()) for q in limited))
    counted = select(func.count()).select_from(inner.limit(TOTAL_CAP).subquery())
    return int((await session.execute(counted)).scalar_one())
