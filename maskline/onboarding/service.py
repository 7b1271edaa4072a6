"""Opening an organisation: the organisation, its wallet, its webhook secret and its
first API key, in one transaction (the CLI's ``org create``, the sandbox)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing import wallet
from maskline.errors import ConflictError, InvalidRequest
from maskline.keys import service as keys
from maskline.kit.crypto import SecretBox
from maskline.kit.ids import new_id
from maskline.orgs import service as orgs
from maskline.orgs.models import Organisation
from maskline.webhooks import service as webhooks


@dataclass(frozen=True, slots=True)
class NewOrganisation:
    org: Organisation
    api_key: str
    webhook_secret: str


async def create_org(
    session: AsyncSession,
    name: str,
    *,
    box: SecretBox,
    now: datetime,
    terms: orgs.OrgTerms | None = None,
    opening_balance: int = 0,
    sandbox: bool = False,
) -> NewOrganisation:
    name = orgs.check_name(name)
    terms = orgs.validated(terms or orgs.OrgTerms())
    if opening_balance < 0:
        raise InvalidRequest("balance must be 0 or more.")
    if (await session.execute(select(Organisation).where(Organisation.name == name))).first():
        raise ConflictError(f"An organisation named {name!r} already exists.")
    org = Organisation(
        id=new_id("org"),
        name=name,
        is_sandbox=sandbox,
        gstin=terms.gstin,
        state_code=terms.state_code,
        rate_paise=150 if terms.rate_paise is None else terms.rate_paise,
        pulse_sec=terms.pulse_sec or 60,
        max_live_calls=100 if terms.max_live_calls is None else terms.max_live_calls,
        created_at=now,
    )
    session.add(org)
    await session.flush()
    await wallet.open_wallet(session, org.id, now=now)
    if opening_balance:
        await wallet.credit(
            session, org.id, opening_balance, kind="adjustment", now=now, reference="opening"
        )
    secret = await webhooks.create_endpoint(session, org.id, box=box, now=now)
    _key, raw = await keys.create_key(session, org, now=now)
    return NewOrganisation(org=org, api_key=raw, webhook_secret=secret)
