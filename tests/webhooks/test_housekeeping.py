"""SPEC §3: Idempotency-Keys are kept 24 hours; the worker removes older ones."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from maskline.calls.models import IdempotencyKey
from tests.support.api import Api


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
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        async with api.runtime.db.read() as session:
            keys = sorted(
                (
                    await session.execute(
                        select(IdempotencyKey.key).where(IdempotencyKey.org_id == org.id)
                    )
                ).scalars()
            )
        if keys == ["fresh"]:
            break
        assert loop.time() < deadline, keys
        await asyncio.sleep(0.05)
