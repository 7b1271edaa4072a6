from __future__ import annotations

import click
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.cli.context import Command, run
from maskline.cli.options import json_option
from maskline.cli.output import emit
from maskline.errors import InvalidRequest
from maskline.kit.money import parse_rupees
from maskline.onboarding import service as onboarding
from maskline.orgs import service
from maskline.orgs.schemas import OrganisationOut
from maskline.orgs.service import OrgTerms


@click.group()
def org() -> None:
    """Organisations."""


def _terms_options(func: click.decorators.FC) -> click.decorators.FC:
    for decorator in reversed(
        [
            click.option("--gstin", help="GSTIN (15 characters, check character verified)."),
            click.option("--state", "state_code", help="GST state code when there is no GSTIN."),
            click.option("--rate-paise", type=int, help="Price per minute in paise."),
            click.option("--pulse-sec", type=int, help="Billing pulse in seconds."),
            click.option("--max-live-calls", type=int, help="Cap on simultaneous live calls."),
        ]
    ):
        func = decorator(func)
    return func


@org.command("create")
@click.argument("name")
@click.option("--balance", default="0", metavar="RUPEES", help="Opening balance (no invoice).")
@_terms_options
@click.option("--sandbox", is_flag=True, help="A sandbox organisation (vp_test_ keys, sim calls).")
@json_option
def create(
    name: str,
    balance: str,
    gstin: str | None,
    state_code: str | None,
    rate_paise: int | None,
    pulse_sec: int | None,
    max_live_calls: int | None,
    sandbox: bool,
    as_json: bool,
) -> None:
    """Create an organisation with its wallet, webhook secret and first API key."""
    try:
        opening = parse_rupees(balance)
    except ValueError as exc:
        raise InvalidRequest(f"--balance: {exc}.") from None
    terms = OrgTerms(gstin, state_code, rate_paise, pulse_sec, max_live_calls)

    async def work(cmd: Command) -> onboarding.NewOrganisation:
        box = cmd.box()

        async def change(session: AsyncSession) -> onboarding.NewOrganisation:
            return await onboarding.create_org(
                session,
                name,
                box=box,
                now=cmd.clock.now(),
                terms=terms,
                opening_balance=opening,
                sandbox=sandbox,
            )

        return await cmd.run_transaction(change)

    created = run(work)
    emit(
        {
            "id": created.org.id,
            "name": created.org.name,
            "api_key": created.api_key,
            "webhook_secret": created.webhook_secret,
        },
        as_json=as_json,
    )


@org.command("update")
@click.argument("org_ref", metavar="ORG")
@_terms_options
@json_option
def update(
    org_ref: str,
    gstin: str | None,
    state_code: str | None,
    rate_paise: int | None,
    pulse_sec: int | None,
    max_live_calls: int | None,
    as_json: bool,
) -> None:
    """Change an organisation's GST details, rate, pulse or live-call cap."""
    terms = OrgTerms(gstin, state_code, rate_paise, pulse_sec, max_live_calls)

    async def work(cmd: Command) -> OrganisationOut:
        async def change(session: AsyncSession) -> OrganisationOut:
            found = await service.resolve_org(session, org_ref)
            return OrganisationOut.build(await service.update_org(session, found, terms))

        return await cmd.run_transaction(change)

    emit(run(work).model_dump(), as_json=as_json)


@org.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List organisations."""

    async def work(cmd: Command) -> list[OrganisationOut]:
        async with cmd.db.read() as session:
            return [OrganisationOut.build(o) for o in await service.list_orgs(session)]

    emit({"organisations": [o.model_dump() for o in run(work)]}, as_json=as_json)
