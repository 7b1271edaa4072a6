"""The organisation's webhook endpoint and signing secret (delivery lives in the worker)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.kit.crypto import SecretBox
from maskline.kit.scope import owned_by, scoped
from maskline.webhooks.models import WebhookDelivery, WebhookEndpoint
from maskline.webhooks.repository import find_delivery
from maskline.webhooks.signing import SECRET_PREFIX

SECRET_BYTES = 32
SHOWN_PREFIX_LENGTH = len(SECRET_PREFIX) + 4
ROTATION_OVERLAP = timedelta(hours=24)


def generate_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes (SPEC §6)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


@dataclass(frozen=True, slots=True)
class EndpointSecret:
    url: str | None
    secret: str | None


async def create_endpoint(
    session: AsyncSession, org_id: str, *, box: SecretBox, now: datetime
) -> str:
    """Give a new organisation its signing secret; returns the secret (shown once)."""
    secret = generate_secret()
    session.add(
        WebhookEndpoint(
            org_id=org_id,
            url=None,
            secret_enc=box.encrypt(secret),
            secret_prefix=secret[:SHOWN_PREFIX_LENGTH],
            enabled=True,
            created_at=now,
            updated_at=now,
        )
    )
    await session.flush()
    return secret


async def get_endpoint(session: AsyncSession, org_id: str) -> WebhookEndpoint | None:
    return (await session.execute(scoped(WebhookEndpoint, org_id))).scalar_one_or_none()


async def lock_endpoint(session: AsyncSession, org_id: str) -> WebhookEndpoint | None:
    """The endpoint, locked until the transaction ends (PostgreSQL; SQLite's writer
    lock does the same).

    Lock order: whatever changes an organisation's endpoint and several of its
    deliveries together (a 410, ``webhook set``, a replay) takes this lock first and
    the delivery rows after it, so such transactions queue here instead of
    deadlocking on the deliveries.
    """
    return (
        await session.execute(
            scoped(WebhookEndpoint, org_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def pause_endpoint(
    session: AsyncSession, endpoint: WebhookEndpoint, *, now: datetime
) -> None:
    """Disable a locked endpoint after a 410 Gone and pause its pending deliveries (once:
    later 410s find it disabled) until ``webhook set`` re-enables it (SPEC §6)."""
    if not endpoint.enabled:
        return
    endpoint.enabled = False
    endpoint.updated_at = now
    await session.execute(
        update(WebhookDelivery)
        .where(
            owned_by(WebhookDelivery, endpoint.org_id),
            WebhookDelivery.to_endpoint.is_(True),
            WebhookDelivery.status == "pending",
        )
        .values(status="paused")
    )


async def set_url(
    session: AsyncSession, org_id: str, url: str, *, box: SecretBox, now: datetime
) -> EndpointSecret:
    """Point the organisation at ``url`` (re-enabling it); the secret is kept.

    The secret is returned only when this call had to create one. Every unfinished
    delivery to the endpoint (paused by a 410, or pending a retry) moves to ``url``
    and is due at once.
    """
    endpoint = await lock_endpoint(session, org_id)
    if endpoint is None:
        secret = await create_endpoint(session, org_id, box=box, now=now)
        endpoint = await get_endpoint(session, org_id)
        assert endpoint is not None
        endpoint.url = url
        await session.flush()
        return EndpointSecret(url=url, secret=secret)
    endpoint.url = url
    endpoint.enabled = True
    endpoint.updated_at = now
    # Re-enabling releases the deliveries a 410 paused; retries follow the endpoint.
    await session.execute(
        update(WebhookDelivery)
        .where(
            owned_by(WebhookDelivery, org_id),
            WebhookDelivery.to_endpoint.is_(True),
            WebhookDelivery.status.in_(("pending", "paused")),
        )
        .values(status="pending", next_attempt_at=now, url=url)
    )
    await session.flush()
    return EndpointSecret(url=url, secret=None)


async def rotate_secret(
    session: AsyncSession, org_id: str, *, box: SecretBox, now: datetime
) -> EndpointSecret:
    """A new signing secret; the old one keeps signing beside it for 24 hours (SPEC §6)."""
    endpoint = await get_endpoint(session, org_id)
    if endpoint is None:
        secret = await create_endpoint(session, org_id, box=box, now=now)
        return EndpointSecret(url=None, secret=secret)
    secret = generate_secret()
    endpoint.previous_secret_enc = endpoint.secret_enc
    endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
    endpoint.secret_enc = box.encrypt(secret)
    endpoint.secret_prefix = secret[:SHOWN_PREFIX_LENGTH]
    endpoint.updated_at = now
    await session.flush()
    return EndpointSecret(url=endpoint.url, secret=secret)


async def replay(
    session: AsyncSession, org_id: str | None, delivery_id: str, *, now: datetime
) -> WebhookDelivery:
    """Set a delivery to pending for an immediate attempt; one to an endpoint that a
    410 disabled stays paused until ``webhook set`` re-enables it."""
    row = await find_delivery(session, org_id, delivery_id)
    endpoint = await lock_endpoint(session, row.org_id) if row.to_endpoint else None
    await session.refresh(row, with_for_update=True)
    row.status = "paused" if endpoint is not None and not endpoint.enabled else "pending"
    row.next_attempt_at = now
    row.lease_owner = None
    row.lease_expires_at = None
    await session.flush()
    return row
