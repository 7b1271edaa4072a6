"""Top-ups and their GST invoices (SPEC §4)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing import wallet
from maskline.billing.gst import split_gst
from maskline.billing.models import Invoice, InvoiceCounter
from maskline.errors import InvalidRequest
from maskline.kit.ids import new_id
from maskline.kit.india import financial_year_code, ist_date
from maskline.kit.upsert import insert_for
from maskline.orgs.models import Organisation
from maskline.settings import Settings

MINIMUM_TOPUP_PAISE = 1_000
INVOICE_SERIES = "ML"
DESCRIPTION = "Prepaid wallet top-up for number masking voice calls"


async def _next_invoice_number(session: AsyncSession, financial_year: str) -> str:
    """Gapless: the counter row is bumped inside the top-up's own transaction."""
    stmt = insert_for(session, InvoiceCounter).values(financial_year=financial_year, last_number=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[InvoiceCounter.financial_year],
        set_={"last_number": InvoiceCounter.last_number + 1},
    ).returning(InvoiceCounter.last_number)
    number = (await session.execute(stmt)).scalar_one()
    return f"{INVOICE_SERIES}/{financial_year}/{number:06d}"


def recipient_state(org: Organisation, settings: Settings) -> str:
    if org.gstin:
        return org.gstin[:2]
    return org.state_code or settings.provider_state_code


async def top_up(
    session: AsyncSession,
    org: Organisation,
    amount: int,
    *,
    settings: Settings,
    now: datetime,
    reference: str | None = None,
) -> Invoice:
    """Credit ``amount`` paise to the wallet and issue the GST invoice for it."""
    if amount < MINIMUM_TOPUP_PAISE:
        raise InvalidRequest("amount must be at least Rs 10 before GST.")
    state = recipient_state(org, settings)
    tax = split_gst(amount, recipient_state=state, provider_state=settings.provider_state_code)
    today = ist_date(now)
    invoice = Invoice(
        id=new_id("inv"),
        invoice_number=await _next_invoice_number(session, financial_year_code(today)),
        invoice_date=today.isoformat(),
        org_id=org.id,
        supplier_name=settings.provider_name,
        supplier_address=settings.provider_address,
        supplier_gstin=settings.provider_gstin,
        recipient_name=org.legal_name or org.name,
        recipient_address=org.billing_address,
        gstin=org.gstin,
        place_of_supply=state,
        sac=settings.invoice_sac,
        description=DESCRIPTION,
        amount=amount,
        cgst=tax.cgst,
        sgst=tax.sgst,
        igst=tax.igst,
        total=amount + tax.total_tax,
        reference=reference,
        created_at=now,
    )
    session.add(invoice)
    await session.flush()
    await wallet.credit(
        session, org.id, amount, kind="topup", now=now, reference=reference, invoice_id=invoice.id
    )
    return invoice
