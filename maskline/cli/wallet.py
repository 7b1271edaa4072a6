from __future__ import annotations

import click
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing import wallet as wallets
from maskline.billing.invoices import top_up
from maskline.billing.schemas import BillingOut, InvoiceOut
from maskline.cli.context import Command, run
from maskline.cli.options import json_option, org_option
from maskline.cli.output import emit
from maskline.errors import InvalidRequest
from maskline.kit.money import parse_rupees
from maskline.orgs import service as orgs

MAX_REFERENCE_LENGTH = 200


@click.group()
def wallet() -> None:
    """Prepaid wallets."""


@wallet.command("topup")
@org_option
@click.argument("rupees")
@click.option("--reference", help="Payment reference printed on the invoice.")
@json_option
def topup(org_ref: str, rupees: str, reference: str | None, as_json: bool) -> None:
    """Credit RUPEES to the wallet and issue its GST invoice (GST is charged on top)."""
    try:
        amount = parse_rupees(rupees)
    except ValueError as exc:
        raise InvalidRequest(f"RUPEES: {exc}.") from None
    if reference is not None and len(reference) > MAX_REFERENCE_LENGTH:
        raise InvalidRequest(f"--reference must be at most {MAX_REFERENCE_LENGTH} characters.")

    async def work(cmd: Command) -> InvoiceOut:
        async def change(session: AsyncSession) -> InvoiceOut:
            found = await orgs.resolve_org(session, org_ref)
            invoice = await top_up(
                session,
                found,
                amount,
                settings=cmd.settings,
                now=cmd.clock.now(),
                reference=reference,
            )
            return InvoiceOut.build(invoice)

        return await cmd.run_transaction(change)

    emit(run(work).model_dump(), as_json=as_json)


@wallet.command("show")
@org_option
@json_option
def show(org_ref: str, as_json: bool) -> None:
    """Show the billing object of SPEC §3."""

    async def work(cmd: Command) -> BillingOut:
        async with cmd.db.read() as session:
            found = await orgs.resolve_org(session, org_ref)
            return BillingOut.build(found, await wallets.get_wallet(session, found.id))

    emit(run(work).model_dump(), as_json=as_json)
