from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing.models import Invoice, LedgerEntry
from maskline.kit.pagination import Listing, Page, Paged, page_of
from maskline.kit.scope import scoped

INVOICES = Listing(
    Invoice, Invoice.created_at, Invoice.invoice_number, name="invoices", noun="invoices"
)


async def page_of_invoices(session: AsyncSession, org_id: str, page: Page) -> Paged[Invoice]:
    """The organisation's invoices, newest first."""
    return await page_of(session, INVOICES, [scoped(Invoice, org_id)], page, filters={})


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
