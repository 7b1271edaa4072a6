"""The sandbox bootstrap (SPEC §9): a first start on an empty database gets a try-it org."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.crypto import SecretBox
from maskline.numbers import service as numbers
from maskline.onboarding.service import create_org
from maskline.orgs.models import Organisation

SANDBOX_NAME = "sandbox"
SANDBOX_BALANCE_PAISE = 50_000
SANDBOX_NUMBERS = ("917969002801", "917969002802", "917969002803")
_BOOTSTRAP_LOCK_ID = 0x6D61736B  # "mask"


@dataclass(frozen=True, slots=True)
class SandboxCreated:
    org_id: str
    api_key: str
    # Filled in by the app: the portal sign-in link of the sandbox's owner.
    sign_in_link: str | None = None


async def bootstrap_sandbox(
    session: AsyncSession, *, box: SecretBox, now: datetime
) -> SandboxCreated | None:
    """Create the sandbox organisation once, when there is no organisation at all.

    Runs in a write transaction: on SQLite ``BEGIN IMMEDIATE`` already holds the
    database lock; on PostgreSQL a transaction-scoped advisory lock makes two
    processes starting at once agree.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _BOOTSTRAP_LOCK_ID})
    count = (await session.execute(select(func.count()).select_from(Organisation))).scalar_one()
    if count:
        return None
    created = await create_org(
        session, SANDBOX_NAME, box=box, now=now, opening_balance=SANDBOX_BALANCE_PAISE, sandbox=True
    )
    # Numbers an operator already put in the pool stay where they are.
    taken = {row.number for row in await numbers.list_numbers(session)}
    fresh = [number for number in SANDBOX_NUMBERS if number not in taken]
    if fresh:
        await numbers.add_numbers(session, fresh, org_id=created.org.id, now=now)
    return SandboxCreated(org_id=created.org.id, api_key=created.api_key)
