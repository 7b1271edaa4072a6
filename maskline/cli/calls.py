from __future__ import annotations

import random

import click
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.calls.models import Call
from maskline.calls.schemas import CallOut
from maskline.calls.seed import Seeded, seed_calls
from maskline.calls.tally import PAIR_DIGEST_PURPOSE
from maskline.cli.context import Command, run
from maskline.cli.options import json_option, org_option
from maskline.cli.output import emit
from maskline.errors import InvalidRequest, NotFound
from maskline.kit.clock import rfc3339
from maskline.kit.crypto import KeyedDigest, resolve_secret_key
from maskline.orgs.service import resolve_org


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


@calls.command("seed")
@org_option
@click.option("--count", type=click.IntRange(1, 10_000_000), required=True, help="Calls to write.")
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=30,
    show_default=True,
    help="Spread over the days before now.",
)
@click.option("--seed", "random_seed", type=int, default=None, help="Random seed (repeatable).")
@click.option("--force", is_flag=True, help="Seed a live (non-sandbox) organisation too.")
@json_option
def seed(
    org_ref: str, count: int, days: int, random_seed: int | None, force: bool, as_json: bool
) -> None:
    """Write synthetic ended calls in bulk (for benchmarks), with every count and
    index kept as real calls keep them. Refuses a live organisation without --force."""

    async def work(cmd: Command) -> Seeded:
        digest = KeyedDigest(resolve_secret_key(cmd.settings), PAIR_DIGEST_PURPOSE)

        async def write(session: AsyncSession) -> Seeded:
            org = await resolve_org(session, org_ref)
            if not org.is_sandbox and not force:
                raise InvalidRequest(
                    f"{org.name} is a live organisation: seed only a sandbox one, or give --force."
                )
            return await seed_calls(
                session,
                org.id,
                count=count,
                days=days,
                now=cmd.clock.now(),
                rate_paise=org.rate_paise,
                pulse_sec=org.pulse_sec,
                pair_digest=digest,
                rng=random.Random(random_seed),
            )

        return await cmd.run_transaction(write)

    done = run(work)
    emit(
        {"seeded": done.calls, "first": rfc3339(done.first), "last": rfc3339(done.last)},
        as_json=as_json,
    )
