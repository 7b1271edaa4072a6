"""The masked-number pool: virtual numbers written as 12 digits, ``91…`` (SPEC §2)."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.errors import ConflictError, InvalidRequest, NotFound
from maskline.kit.scope import owned_by, owned_by_or_shared, unowned
from maskline.numbers.models import MaskedNumber

_SEPARATORS = re.compile(r"[ \-()]")
# Country code 91, then a 10-digit national number that does not start with 0.
_MASKED = re.compile(r"91[1-9][0-9]{9}")


def normalise_masked_number(raw: str) -> str:
    """``+91 79690-02802`` → ``917969002802``; InvalidRequest when it is not one."""
    text = _SEPARATORS.sub("", raw.strip())
    text = text.removeprefix("+")
    if not (text.isascii() and _MASKED.fullmatch(text)):
        raise InvalidRequest(
            f"{raw!r} is not a masked number: write 12 digits with country code 91."
        )
    return text


async def add_numbers(
    session: AsyncSession, numbers: list[str], *, org_id: str | None, now: datetime
) -> list[MaskedNumber]:
    normalised = [normalise_masked_number(n) for n in numbers]
    if len(set(normalised)) != len(normalised):
        raise InvalidRequest("The same number is given twice.")
    existing = (
        await session.execute(
            select(MaskedNumber.number).where(MaskedNumber.number.in_(normalised))
        )
    ).scalars()
    taken = sorted(existing)
    if taken:
        raise ConflictError(f"Already in the pool: {', '.join(taken)}.")
    rows = [MaskedNumber(number=n, org_id=org_id, created_at=now) for n in normalised]
    session.add_all(rows)
    await session.flush()
    return rows


async def list_numbers(session: AsyncSession, *, org_id: str | None = None) -> list[MaskedNumber]:
    stmt = select(MaskedNumber).order_by(MaskedNumber.number)
    if org_id is not None:
        stmt = stmt.where(owned_by(MaskedNumber, org_id))
    return list((await session.execute(stmt)).scalars())


async def numbers_serving(session: AsyncSession, org_id: str) -> list[MaskedNumber]:
    """The numbers the pool may give the organisation's calls: its own, then the shared."""
    stmt = (
        select(MaskedNumber)
        .where(owned_by_or_shared(MaskedNumber, org_id))
        .order_by(unowned(MaskedNumber), MaskedNumber.number)
    )
    return list((await session.execute(stmt)).scalars())


async def remove_number(session: AsyncSession, raw: str) -> MaskedNumber:
    number = normalise_masked_number(raw)
    row = (
        await session.execute(select(MaskedNumber).where(MaskedNumber.number == number))
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{number} is not in the pool.")
    await session.delete(row)
    await session.flush()
    return row


async def all_pool_numbers(session: AsyncSession) -> frozenset[str]:
    """Every masked number (shared pool and organisations' own), 12-digit form."""
    return frozenset((await session.execute(select(MaskedNumber.number))).scalars())
