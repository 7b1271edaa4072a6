from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing.models import Invoice
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
