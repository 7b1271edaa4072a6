"""Organisations: their terms, updates and lookup. Opening one (with its wallet, webhook
secret and first key) is ``onboarding``'s: the organisation is below the domains that
hang on it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.errors import InvalidRequest, NotFound
from maskline.kit.gstin import InvalidGstin, validate_gstin, validate_state_code
from maskline.orgs.models import Organisation

MAX_NAME_LENGTH = 100
MAX_PULSE_SEC = 3600
MAX_RATE_PAISE = 100_000


@dataclass(frozen=True, slots=True)
class OrgTerms:
    """The settable terms of an organisation; None leaves a value as it is."""

    gstin: str | None = None
    state_code: str | None = None
    rate_paise: int | None = None
    pulse_sec: int | None = None
    max_live_calls: int | None = None


def validated(terms: OrgTerms) -> OrgTerms:
    """``terms`` checked and normalised; InvalidRequest naming the first that is not."""
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


def check_name(name: str) -> str:
    """The name without surrounding spaces; InvalidRequest when it cannot be one."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidRequest(f"name must be 1 to {MAX_NAME_LENGTH} printable characters.")
    return name


async def update_org(session: AsyncSession, org: Organisation, terms: OrgTerms) -> Organisation:
    terms = validated(terms)
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


MAX_ADDRESS_LENGTH = 500


async def set_billing_profile(
    session: AsyncSession,
    org: Organisation,
    *,
    legal_name: str,
    address: str,
    state_code: str,
    gstin: str,
) -> Organisation:
    """The billing profile printed on invoices; an empty GSTIN clears it (unregistered).
    InvalidRequest names the first field that is not right (the GSTIN checked as §4)."""
    legal_name = legal_name.strip()
    if len(legal_name) > MAX_NAME_LENGTH or (legal_name and not legal_name.isprintable()):
        raise InvalidRequest(f"legal name must be at most {MAX_NAME_LENGTH} printable characters.")
    address = address.strip().replace("\r\n", "\n")
    if len(address) > MAX_ADDRESS_LENGTH:
        raise InvalidRequest(f"address must be at most {MAX_ADDRESS_LENGTH} characters.")
    terms = validated(OrgTerms(gstin=gstin.strip() or None, state_code=state_code.strip() or None))
    org.legal_name = legal_name or None
    org.billing_address = address or None
    org.gstin = terms.gstin
    org.state_code = terms.gstin[:2] if terms.gstin else terms.state_code
    await session.flush()
    return org
