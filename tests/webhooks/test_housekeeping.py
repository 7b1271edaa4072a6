"""SPEC §3: Idempotency-Keys are kept 24 hours; the worker removes older ones."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from maskline.calls.models import IdempotencyKey
from tests.support.api import Api
from tests.support.waits import eventually_value


async def test_keys_older_than_a_day_are_removed(api: Api) -> None:
    org = await api.make_org("housekeeping")
    now = api.runtime.clock.now()
    async with api.runtime.db.write() as session:
        for key, age in (("old", timedelta(hours=25)), ("fresh", timedelta(hours=23))):
            session.add(
                IdempotencyKey(
                    org_id=org.id,
                    key=key,
                    request_hash="h",
                    status_code=201,
                    response_body="{}",
                    created_at=now - age,
                )
            )

    async def keys() -> list[str]:
        async with api.runtime.db.read() as session:
            return sorted(
                (
                    await session.execute(
                        select(IdempotencyKey.key).where(IdempotencyKey.org_id == org.id)
                    )
                ).scalars()
            )

    await eventually_value(
        keys,
        lambda keys: keys == ["fresh"],
        what="only the fresh key left",
        within=20,
        interval=0.05,
    )
