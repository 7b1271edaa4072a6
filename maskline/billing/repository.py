from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing.models import Invoice, LedgerEntry
from maskline.kit.pagination import Page
from maskline.kit.scope import scoped


async def page_of_invoices(
    session: AsyncSession, org_id: str, page: Page
) -> tuple[list[Invoice], int]:
    query = scoped(Invoice, org_id)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.execute(
        query.order_by(Invoice.created_at.desc(), Invoice.invoice_number.desc())
        .offset(page.offset)
        .limit(page.per_page)
    )
    return list(rows.scalars()), total


async def find_invoice(session: AsyncSession, org_id: str, invoice_id: str) -> Invoice | None:
    """The organisation's invoice ``invoice_id`` (None for another organisation's)."""
    found = await session.execute(scoped(Invoice, org_id).where(Invoice.id == invoice_id))
    return found.scalar_one_or_none()


async def latest_ledger(
    session: AsyncSession, org_id: str, *, limit: int = 50
) -> list[LedgerEntry]:
    """The wallet's newest ledger entries first."""
    rows = await session.execute(
        scoped(LedgerEntry, org_id).order_by(LedgerEntry.id.desc()).limit(limit)
    )
    return list(rows.scalars())
