from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing.models import Invoice
from maskline.kit.pagination import Listing, Page, Paged, page_of
from maskline.kit.scope import scoped

INVOICES = Listing(
    Invoice, Invoice.created_at, Invoice.invoice_number, name="invoices", noun="invoices"
)


async def page_of_invoices(session: AsyncSession, org_id: str, page: Page) -> Paged[Invoice]:
    """The organisation's invoices, newest first."""
    return await page_of(session, INVOICES, [scoped(Invoice, org_id)], page, filters={})
