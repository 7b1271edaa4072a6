"""Organisations: creation (with wallet, webhook secret and first key), updates, lookup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.billing import wallet
from maskline.billing.gst import InvalidGstin, validate_gstin, validate_state_code
from maskline.errors import ConflictError, InvalidRequest, NotFound
from maskline.keys import service as keys
from maskline.kit.crypto import SecretBox
from maskline.kit.ids import new_id
from maskline.orgs.models import Organisation
from maskline.webhooks import service as webhooks

MAX_NAME_LENGTH = 100
MAX_PULSE_SEC = 3600
MAX_RATE_PAISE = 100_000


@dataclass(frozen=True, slots=True)
class NewOrganisation:
    org: Organisation
    api_key: str
    webhook_secret: str


@dataclass(frozen=True, slots=True)
class OrgTerms:
    """The settable terms of an organisation; None leaves a value as it is."""

    gstin: str | None = None
    state_code: str | None = None
    rate_paise: int | None = None
    pulse_sec: int | None = None
    max_live_calls: int | None = None


def _validated(terms: OrgTerms) -> OrgTerms:
    try:
        gstin = validate_gstin(terms.gstin) if terms.gstin is not None else None
        state = validate_state_code(terms.state_code) if terms.state_code is not None else None
    except InvalidGstin as exc:
        raise InvalidRequest(str(exc)) from None
    if terms.rate_paise is not None and not 0 <= terms.rate_paise <= MAX_RATE_PAISE:
        raise InvalidRequest(f"rate-paise must be between 0 and {MAX_RATE_PAISE}.")
    if terms.pulse_sec is not None and not 1 <= terms.pulse_sec <= MAX_PULSE_SEC:
        raise InvalidRequest(f"pulse-sec must be between 1 and {MAX_PULSE_SEC}.")
    if terms.max_live_calls is not None and terms.max_live_calls < 0:
        raise InvalidRequest("max-live-calls must be 0 or more.")
    return OrgTerms(gstin, state, terms.rate_paise, terms.pulse_sec, terms.max_live_calls)


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidRequest(f"name must be 1 to {MAX_NAME_LENGTH} printable characters.")
    return name


async def create_org(
    session: AsyncSession,
    name: str,
    *,
    box: SecretBox,
    now: datetime,
    terms: OrgTerms | None = None,
    opening_balance: int = 0,
    sandbox: bool = False,
) -> NewOrganisation:
    name = _check_name(name)
    terms = _validated(terms or OrgTerms())
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


async def update_org(session: AsyncSession, org: Organisation, terms: OrgTerms) -> Organisation:
    terms = _validated(terms)
    if terms.gstin is not None:
        org.gstin = terms.gstin
    if terms.state_code is not None:
        org.state_code = terms.state_code
    if terms.rate_paise is not None:
        org.rate_paise = terms.rate_paise
    if terms.pulse_sec is not None:
        org.pulse_sec = terms.pulse_sec
    if terms.max_live_calls is not None:
        org.max_live_calls = terms.max_live_calls
    await session.flush()
    return org


async def resolve_org(session: AsyncSession, ref: str) -> Organisation:
    """An organisation by id or by name."""
    org = (
        (
            await session.execute(
                select(Organisation)
                .where(or_(Organisation.id == ref, Organisation.name == ref))
                .order_by((Organisation.id == ref).desc())
            )
        )
        .scalars()
        .first()
    )
    if org is None:
        raise NotFound(f"No organisation with id or name {ref!r}.")
    return org


async def get_org(session: AsyncSession, org_id: str) -> Organisation:
    org = await session.get(Organisation, org_id)
    if org is None:
        raise NotFound("The organisation was not found.")
    return org


async def list_orgs(session: AsyncSession) -> list[Organisation]:
    return list(
        (await session.execute(select(Organisation).order_by(Organisation.created_at))).scalars()
    )
