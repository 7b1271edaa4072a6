from __future__ import annotations

import click
from sqlalchemy import select

from maskline.calls.models import Call
from maskline.calls.schemas import CallOut
from maskline.cli.context import Command, run
from maskline.cli.options import json_option
from maskline.cli.output import emit
from maskline.errors import NotFound


@click.group()
def calls() -> None:
    """Calls."""


@calls.command("show")
@click.argument("call_sid")
@json_option
def show(call_sid: str, as_json: bool) -> None:
    """Show one call object (any organisation's: this is the operator's view)."""

    async def work(cmd: Command) -> CallOut:
        async with cmd.db.read() as session:
            row = await session.scalar(
                select(Call).where(Call.call_sid == call_sid.strip().lower())
            )
            if row is None:
                raise NotFound(f"No call with call_sid {call_sid!r}.")
            return CallOut.build(row, public_url=cmd.settings.public_url)

    emit(run(work).model_dump(), as_json=as_json)
