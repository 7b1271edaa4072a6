from __future__ import annotations

import click
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.cli.context import Command, run
from maskline.cli.options import json_option
from maskline.cli.output import emit
from maskline.numbers import service
from maskline.numbers.schemas import NumberOut
from maskline.orgs import service as orgs


@click.group()
def numbers() -> None:
    """The masked-number pool."""


@numbers.command("add")
@click.argument("number", nargs=-1, required=True)
@click.option("--org", "org_ref", metavar="ORG", help="Only this organisation may use them.")
@json_option
def add(number: tuple[str, ...], org_ref: str | None, as_json: bool) -> None:
    """Add masked numbers (12 digits, 91…) to the shared pool or to one organisation."""

    async def work(cmd: Command) -> list[NumberOut]:
        async def change(session: AsyncSession) -> list[NumberOut]:
            org_id = (await orgs.resolve_org(session, org_ref)).id if org_ref else None
            rows = await service.add_numbers(
                session, list(number), org_id=org_id, now=cmd.clock.now()
            )
            return [NumberOut.build(r) for r in rows]

        return await cmd.run_transaction(change)

    emit({"numbers": [n.model_dump() for n in run(work)]}, as_json=as_json)


@numbers.command("list")
@click.option("--org", "org_ref", metavar="ORG", help="Only this organisation's numbers.")
@json_option
def list_(org_ref: str | None, as_json: bool) -> None:
    """List the pool."""

    async def work(cmd: Command) -> list[NumberOut]:
        async with cmd.db.read() as session:
            org_id = (await orgs.resolve_org(session, org_ref)).id if org_ref else None
            return [NumberOut.build(r) for r in await service.list_numbers(session, org_id=org_id)]

    emit({"numbers": [n.model_dump() for n in run(work)]}, as_json=as_json)


@numbers.command("remove")
@click.argument("number")
@json_option
def remove(number: str, as_json: bool) -> None:
    """Take a number out of the pool."""

    async def work(cmd: Command) -> NumberOut:
        async def change(session: AsyncSession) -> NumberOut:
            return NumberOut.build(await service.remove_number(session, number))

        return await cmd.run_transaction(change)

    emit({"numbers": [run(work).model_dump()]}, as_json=as_json)
