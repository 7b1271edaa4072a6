from __future__ import annotations

from datetime import timedelta

import click
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.cli.context import Command, run
from maskline.cli.options import json_option, org_option
from maskline.cli.output import emit
from maskline.errors import InvalidRequest
from maskline.keys import service
from maskline.keys.schemas import KeyOut
from maskline.kit.clock import rfc3339
from maskline.orgs import service as orgs

MAX_RATE_LIMIT = 1_000_000
MAX_EXPIRY_DAYS = 3650


@click.group()
def key() -> None:
    """API keys."""


@key.command("create")
@org_option
@click.option("--rate-limit", type=int, help="Requests a minute for this key (default 100).")
@click.option("--expires-in", type=int, metavar="DAYS", help="The key stops working after this.")
@json_option
def create(org_ref: str, rate_limit: int | None, expires_in: int | None, as_json: bool) -> None:
    """Create another API key for an organisation (the old ones keep working)."""
    if rate_limit is not None and not 1 <= rate_limit <= MAX_RATE_LIMIT:
        raise InvalidRequest(f"--rate-limit must be between 1 and {MAX_RATE_LIMIT}.")
    if expires_in is not None and not 1 <= expires_in <= MAX_EXPIRY_DAYS:
        raise InvalidRequest(f"--expires-in must be between 1 and {MAX_EXPIRY_DAYS} days.")

    async def work(cmd: Command) -> dict[str, object]:
        now = cmd.clock.now()
        expires_at = now + timedelta(days=expires_in) if expires_in is not None else None

        async def change(session: AsyncSession) -> dict[str, object]:
            found = await orgs.resolve_org(session, org_ref)
            row, raw = await service.create_key(
                session, found, now=now, rate_limit=rate_limit, expires_at=expires_at
            )
            return {"id": row.id, "api_key": raw, "expires_at": rfc3339(expires_at)}

        return await cmd.run_transaction(change)

    emit(run(work), as_json=as_json)


@key.command("list")
@org_option
@json_option
def list_(org_ref: str, as_json: bool) -> None:
    """List an organisation's keys (prefixes only: keys are stored hashed)."""

    async def work(cmd: Command) -> list[KeyOut]:
        async with cmd.db.read() as session:
            found = await orgs.resolve_org(session, org_ref)
            return [KeyOut.build(k) for k in await service.list_keys(session, found.id)]

    emit({"keys": [k.model_dump() for k in run(work)]}, as_json=as_json)


@key.command("revoke")
@click.argument("key_id")
@json_option
def revoke(key_id: str, as_json: bool) -> None:
    """Revoke a key at once."""

    async def work(cmd: Command) -> dict[str, object]:
        async def change(session: AsyncSession) -> dict[str, object]:
            row = await service.revoke_key(session, key_id, now=cmd.clock.now())
            return {"id": row.id, "revoked_at": rfc3339(row.revoked_at)}

        return await cmd.run_transaction(change)

    emit(run(work), as_json=as_json)
