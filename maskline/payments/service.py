"""Top-ups paid through Razorpay (SPEC §13): orders, exactly-once credit, refunds.

A payment is credited by one conditional UPDATE of its top-up row (``created`` or
``expired`` → ``paid``) in the same transaction as the credit, its invoice and its
ledger entry: whichever of the callback and the webhook runs it first credits; the
other (in this process or another, at the same moment) finds the row changed and does
nothing. PostgreSQL's row lock makes the second UPDATE wait for the first's commit and
then see ``paid``; SQLite has one writer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.audit import service as audit
from maskline.audit.service import Actor
from maskline.billing import invoices, wallet
from maskline.billing.gst import TaxSplit, split_gst
from maskline.billing.models import Invoice
from maskline.errors import InvalidRequest, NotFound
from maskline.kit.ids import new_id
from maskline.kit.india import financial_year_code, ist_date
from maskline.kit.money import paise_to_rupees, parse_rupees
from maskline.kit.scope import owned_by, scoped
from maskline.kit.upsert import insert_for
from maskline.orgs.models import Organisation
from maskline.orgs.service import get_org
from maskline.payments.gateway import Payment
from maskline.payments.models import CreditNote, CreditNoteCounter, TopUp
from maskline.settings import Settings

log = logging.getLogger("maskline.payments")

ORDER_LIFETIME = timedelta(hours=24)
CURRENCY = "INR"
MAXIMUM_TOPUP_PAISE = 10_000_000  # Rs 1 lakh a top-up
CREDIT_NOTE_SERIES = "ML/CN"
OPEN = ("created", "expired")


class Outcome(Enum):
    CREDITED = "credited"
    ALREADY = "already_credited"
    MISMATCH = "flagged"
    NOT_CAPTURED = "not_captured"
    UNKNOWN_ORDER = "unknown_order"


def rupees(paise: int) -> str:
    return f"Rs {paise_to_rupees(paise)}"


def check_amount(raw: str) -> int:
    """A top-up amount typed in rupees: whole paise, at least Rs 10, at most Rs 1 lakh."""
    try:
        amount = parse_rupees(raw.strip())
    except ValueError:
        raise InvalidRequest("amount must be in rupees with at most 2 decimals.") from None
    if amount < invoices.MINIMUM_TOPUP_PAISE:
        raise InvalidRequest("amount must be at least Rs 10 before GST.")
    if amount > MAXIMUM_TOPUP_PAISE:
        raise InvalidRequest(f"amount must be at most {rupees(MAXIMUM_TOPUP_PAISE)} a top-up.")
    return amount


def tax_on(org: Organisation, amount: int, settings: Settings) -> TaxSplit:
    """The GST the order adds to ``amount`` (the invoice's own split)."""
    return split_gst(
        amount,
        recipient_state=invoices.recipient_state(org, settings),
        provider_state=settings.provider_state_code,
    )


def new_topup_id() -> str:
    return new_id("top")


async def record_order(
    session: AsyncSession,
    org_id: str,
    *,
    topup_id: str,
    amount: int,
    order_amount: int,
    order_id: str,
    now: datetime,
    actor: Actor,
    user_id: str | None,
) -> TopUp:
    """Store the order Razorpay created, as ``created``."""
    topup = TopUp(
        id=topup_id,
        org_id=org_id,
        amount=amount,
        order_amount=order_amount,
        currency=CURRENCY,
        order_id=order_id,
        status="created",
        refunded=0,
        created_by=user_id,
        created_at=now,
        expires_at=now + ORDER_LIFETIME,
    )
    session.add(topup)
    await session.flush()
    await audit.record(
        session,
        org_id,
        actor,
        "topup.created",
        f"Top-up {topup_id} of {rupees(amount)} + GST ordered ({order_id})",
        now=now,
    )
    return topup


async def expire_orders(session: AsyncSession, org_id: str, *, now: datetime) -> None:
    """Unpaid orders older than 24 h are ``expired``: Checkout no longer opens them."""
    await session.execute(
        update(TopUp)
        .where(owned_by(TopUp, org_id), TopUp.status == "created", TopUp.expires_at <= now)
        .values(status="expired")
    )


def effective_status(topup: TopUp, now: datetime) -> str:
    if topup.status == "created" and topup.expires_at <= now:
        return "expired"
    return topup.status


async def find_topup(session: AsyncSession, org_id: str, topup_id: str) -> TopUp:
    found = (
        await session.execute(scoped(TopUp, org_id).where(TopUp.id == topup_id))
    ).scalar_one_or_none()
    if found is None:
        raise NotFound("No such top-up.")
    return found


async def latest_topups(session: AsyncSession, org_id: str, *, limit: int = 20) -> list[TopUp]:
    rows = await session.execute(
        scoped(TopUp, org_id).order_by(TopUp.created_at.desc(), TopUp.id).limit(limit)
    )
    return list(rows.scalars())


async def latest_credit_notes(
    session: AsyncSession, org_id: str, *, limit: int = 50
) -> list[CreditNote]:
    rows = await session.execute(
        scoped(CreditNote, org_id).order_by(CreditNote.created_at.desc()).limit(limit)
    )
    return list(rows.scalars())


async def _topup_by(session: AsyncSession, condition: object) -> TopUp | None:
    # A payment names its order, not its organisation: this lookup spans organisations
    # (the signature, not a session, says the event is Razorpay's).
    return (await session.execute(select(TopUp).where(condition))).scalar_one_or_none()  # type: ignore[arg-type]


async def settle_payment(
    session: AsyncSession, payment: Payment, *, settings: Settings, now: datetime, actor: Actor
) -> Outcome:
    """Credit a captured payment's top-up, exactly once (its invoice and ledger entry in
    the same transaction); flag one whose amount or currency is not its order's."""
    if payment.order_id is None:
        return Outcome.UNKNOWN_ORDER
    topup = await _topup_by(session, TopUp.order_id == payment.order_id)
    if topup is None:
        return Outcome.UNKNOWN_ORDER
    if payment.status != "captured":
        return Outcome.NOT_CAPTURED
    if payment.amount != topup.order_amount or payment.currency != topup.currency:
        reason = (
            f"payment {payment.id} is {payment.amount} {payment.currency}, "
            f"the order {topup.order_amount} {topup.currency}"
        )
        flagged = (
            await session.execute(
                update(TopUp)
                .where(TopUp.id == topup.id, TopUp.status.in_(OPEN))
                .values(status="flagged", payment_id=payment.id, flag_reason=reason, paid_at=now)
                .returning(TopUp.id)
            )
        ).scalar_one_or_none()
        if flagged is not None:
            log.warning("top-up %s flagged for the operator: %s", topup.id, reason)
            await audit.record(
                session,
                topup.org_id,
                actor,
                "topup.flagged",
                f"Top-up {topup.id} not credited: {reason}",
                now=now,
            )
        return Outcome.MISMATCH
    won = (
        await session.execute(
            update(TopUp)
            .where(TopUp.id == topup.id, TopUp.status.in_(OPEN))
            .values(status="paid", payment_id=payment.id, paid_at=now)
            .returning(TopUp.id)
        )
    ).scalar_one_or_none()
    if won is None:
        return Outcome.ALREADY
    org = await get_org(session, topup.org_id)
    invoice = await invoices.top_up(
        session, org, topup.amount, settings=settings, now=now, reference=payment.id
    )
    await session.execute(update(TopUp).where(TopUp.id == topup.id).values(invoice_id=invoice.id))
    await audit.record(
        session,
        topup.org_id,
        actor,
        "topup.paid",
        f"{rupees(topup.amount)} credited by payment {payment.id} "
        f"(invoice {invoice.invoice_number})",
        now=now,
    )
    return Outcome.CREDITED


@dataclass(frozen=True, slots=True)
class Refund:
    """What we read of a Razorpay refund entity."""

    id: str
    payment_id: str
    amount: int
    currency: str


class RefundIgnored(Exception):
    """The refund changes nothing (already processed, or not a payment of ours)."""


def _half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


async def _next_credit_note_number(session: AsyncSession, financial_year: str) -> str:
    """Gapless, like the invoices': the counter is bumped in the refund's transaction."""
    stmt = insert_for(session, CreditNoteCounter).values(
        financial_year=financial_year, last_number=1
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[CreditNoteCounter.financial_year],
        set_={"last_number": CreditNoteCounter.last_number + 1},
    ).returning(CreditNoteCounter.last_number)
    number = (await session.execute(stmt)).scalar_one()
    return f"{CREDIT_NOTE_SERIES}/{financial_year}/{number:06d}"


async def process_refund(
    session: AsyncSession, refund: Refund, *, now: datetime, actor: Actor
) -> CreditNote:
    """Debit the refunded share of the top-up (never below zero; the rest recorded for
    the operator) and issue its GST credit note; once per refund id (RefundIgnored)."""
    topup = await _topup_by(session, TopUp.payment_id == refund.payment_id)
    if topup is None or topup.status != "paid" or topup.invoice_id is None:
        raise RefundIgnored(f"payment {refund.payment_id} is not a credited top-up")
    if refund.currency != topup.currency or refund.amount <= 0:
        raise RefundIgnored(f"refund {refund.id} is {refund.amount} {refund.currency}")
    invoice = await session.get(Invoice, topup.invoice_id)
    assert invoice is not None
    before = (
        await session.execute(
            select(func.coalesce(func.sum(CreditNote.total), 0)).where(
                owned_by(CreditNote, topup.org_id), CreditNote.topup_id == topup.id
            )
        )
    ).scalar_one()
    after = min(before + refund.amount, topup.order_amount)
    # Each tax is the refunded fraction of the invoice's, cumulated, so that refunds
    # adding up to the payment give back exactly the invoice's taxes and amount.
    taxes = [
        _half_up(tax * after, topup.order_amount) - _half_up(tax * before, topup.order_amount)
        for tax in (invoice.cgst, invoice.sgst, invoice.igst)
    ]
    total = after - before
    amount = total - sum(taxes)
    if total <= 0 or amount < 0:
        raise RefundIgnored(f"refund {refund.id} is more than the payment's remainder")
    claimed = (
        await session.execute(
            insert_for(session, CreditNote)
            .values(
                id=new_id("cn"),
                credit_note_number=await _next_credit_note_number(
                    session, financial_year_code(ist_date(now))
                ),
                credit_note_date=ist_date(now).isoformat(),
                org_id=topup.org_id,
                invoice_id=invoice.id,
                topup_id=topup.id,
                refund_id=refund.id,
                amount=amount,
                cgst=taxes[0],
                sgst=taxes[1],
                igst=taxes[2],
                total=total,
                shortfall=0,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=[CreditNote.refund_id])
            .returning(CreditNote.id)
        )
    ).scalar_one_or_none()
    if claimed is None:
        # Processed already: the savepoint's rollback takes the counter's bump back too.
        raise RefundIgnored(f"refund {refund.id} was processed already")
    debited = await _debit_what_remains(session, topup.org_id, amount, refund.id, now=now)
    shortfall = amount - debited
    await session.execute(
        update(CreditNote).where(CreditNote.id == claimed).values(shortfall=shortfall)
    )
    await session.execute(
        update(TopUp).where(TopUp.id == topup.id).values(refunded=TopUp.refunded + amount)
    )
    if shortfall:
        log.warning(
            "refund %s: %s of %s could not be debited (spent); recorded for the operator",
            refund.id,
            shortfall,
            amount,
        )
    note = await session.get(CreditNote, claimed)
    assert note is not None
    await session.refresh(note)
    await audit.record(
        session,
        topup.org_id,
        actor,
        "topup.refunded",
        f"{rupees(total)} refunded ({refund.id}): {rupees(debited)} debited, "
        f"credit note {note.credit_note_number}"
        + (f", {rupees(shortfall)} not debited" if shortfall else ""),
        now=now,
    )
    return note


async def _debit_what_remains(
    session: AsyncSession, org_id: str, amount: int, reference: str, *, now: datetime
) -> int:
    """Debit ``amount`` or what is available of it; what was debited."""
    while amount > 0:
        row = await wallet.get_wallet(session, org_id)
        share = min(amount, row.balance - row.reserved)
        if share <= 0:
            return 0
        if await wallet.debit(session, org_id, share, kind="refund", now=now, reference=reference):
            return share
        await session.refresh(row)
    return 0
