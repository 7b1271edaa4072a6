"""Wire shapes of the billing domain (rupees appear only here)."""

from __future__ import annotations

from pydantic import BaseModel

from maskline.billing.models import Invoice, Wallet
from maskline.billing.wallet import LOW_BALANCE_MINUTES, minute_price_paise
from maskline.kit.clock import rfc3339
from maskline.kit.money import paise_to_rupees, pulse_price_paise
from maskline.kit.pagination import PageMeta
from maskline.orgs.models import Organisation

Rupees = int | float


class BillingOut(BaseModel):
    balance: Rupees
    currency: str
    rate_per_minute: Rupees
    reserved: Rupees
    available: Rupees
    minimum_balance: Rupees
    low_balance: bool

    @classmethod
    def build(cls, org: Organisation, wallet: Wallet) -> BillingOut:
        available = wallet.balance - wallet.reserved
        minute = minute_price_paise(org)
        return cls(
            balance=paise_to_rupees(wallet.balance),
            currency="INR",
            rate_per_minute=paise_to_rupees(pulse_price_paise(org.rate_paise, 60)),
            reserved=paise_to_rupees(wallet.reserved),
            available=paise_to_rupees(available),
            minimum_balance=paise_to_rupees(minute),
            low_balance=available < LOW_BALANCE_MINUTES * minute,
        )


class BillingEnvelope(BaseModel):
    data: BillingOut


class InvoiceOut(BaseModel):
    id: str
    invoice_number: str
    invoice_date: str
    supplier_name: str | None
    supplier_address: str | None
    supplier_gstin: str | None
    org_id: str
    recipient_name: str
    gstin: str | None
    place_of_supply: str
    sac: str
    description: str
    amount: Rupees
    cgst: Rupees
    sgst: Rupees
    igst: Rupees
    total: Rupees
    currency: str
    reference: str | None
    created_at: str

    @classmethod
    def build(cls, invoice: Invoice) -> InvoiceOut:
        created = rfc3339(invoice.created_at)
        assert created is not None
        return cls(
            id=invoice.id,
            invoice_number=invoice.invoice_number,
            invoice_date=invoice.invoice_date,
            supplier_name=invoice.supplier_name,
            supplier_address=invoice.supplier_address,
            supplier_gstin=invoice.supplier_gstin,
            org_id=invoice.org_id,
            recipient_name=invoice.recipient_name,
            gstin=invoice.gstin,
            place_of_supply=invoice.place_of_supply,
            sac=invoice.sac,
            description=invoice.description,
            amount=paise_to_rupees(invoice.amount),
            cgst=paise_to_rupees(invoice.cgst),
            sgst=paise_to_rupees(invoice.sgst),
            igst=paise_to_rupees(invoice.igst),
            total=paise_to_rupees(invoice.total),
            currency="INR",
            reference=invoice.reference,
            created_at=created,
        )


class InvoiceList(BaseModel):
    data: list[InvoiceOut]
    meta: PageMeta
