"""SPEC §10 MASKLINE_CALL_RETENTION_DAYS: calls older than that go, with their events,
webhook deliveries, leases, recordings and idempotency entries; the ledger keeps its
entries (without the link) and the stats answer for the deleted days as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from maskline.billing import wallet
from maskline.billing.models import LedgerEntry
from maskline.calls.models import IdempotencyKey
from maskline.kit.clock import ScaledClock
from maskline.numbers.models import NumberLease
from maskline.retention import tasks as retention_tasks
from tests.calls.conftest import SPEED, call_settings
from tests.support.api import Api, OrgHandle, running_api
from tests.support.calls import place, wait_for
from tests.support.receiver import Receiver
from tests.support.waits import eventually_value

# 10 January 2031, 11:30 IST; the recent call is placed 40 days later.
OLD = datetime(2031, 1, 10, 6, 0, tzinfo=UTC)
RECENT = OLD + timedelta(days=40)
JANUARY = {"start_date": "2031-01-01", "end_date": "2031-01-31"}
JANUARY_TO_FEBRUARY = {"start_date": "2031-01-01", "end_date": "2031-02-25"}


async def stats(api: Api, org: OrgHandle, params: dict[str, str]) -> dict[str, Any]:
    response = await api.client.get("/v1/masking/stats", headers=org.auth, params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def until_gone(api: Api, org: OrgHandle, sids: set[str], *, within: float = 20) -> None:
    async def still_there() -> set[str]:
        left: set[str] = set()
        for sid in sids:
            response = await api.client.get(f"/v1/masking/calls/{sid}", headers=org.auth)
            if response.status_code != 404:
                left.add(sid)
        return left

    await eventually_value(
        still_there,
        lambda left: not left,
        what="the calls to be deleted",
        within=within,
        interval=0.05,
    )


@pytest.mark.slow
async def test_old_calls_are_deleted_and_their_stats_stay(
    database_url: str, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 2: the three old calls take two, as millions would take many.
    monkeypatch.setattr(retention_tasks, "RETENTION_BATCH", 2)
    data_dir = tmp_path / "data"
    settings = call_settings(database_url, data_dir)
    hook = {"webhook_url": receiver.url}
    async with running_api(settings, clock=ScaledClock(SPEED, start=OLD)) as api:
        org = await api.make_org("retention", balance="100", numbers=2)
        old = [
            await place(api, org, party_a="9811100011", party_b="9822200022", **hook),
            await place(api, org, party_a="9811100011", party_b="9833300001", **hook),
        ]
        keyed = await api.client.post(
            "/v1/masking/calls",
            headers={**org.auth, "Idempotency-Key": "retention-1"},
            json={"party_a": "9844400044", "party_b": "9822200022", "record": False},
        )
        assert keyed.status_code == 201
        old.append(keyed.json()["data"])
        old = [await wait_for(api, org, call["call_sid"]) for call in old]
    assert [c["status"] for c in old] == ["completed", "failed", "completed"]
    old_sids = {c["call_sid"] for c in old}

    async with running_api(settings, clock=ScaledClock(SPEED, start=RECENT)) as api:
        recent = await place(api, org, party_a="9811100011", party_b="9822200022", **hook)
        recent = await wait_for(api, org, recent["call_sid"])
        before = {
            "january": await stats(api, org, JANUARY),
            "both": await stats(api, org, JANUARY_TO_FEBRUARY),
        }
        balance = (await api.client.get("/v1/masking/billing", headers=org.auth)).json()

        # A worker with the retention set deletes the old calls by itself, 40 days on.
        keep_30_days = call_settings(database_url, data_dir, call_retention_days=30)
        clock = ScaledClock(SPEED, start=RECENT)
        async with running_api(keep_30_days, clock=clock, role="worker") as worker:
            assert worker.runtime.retention is not None
            await worker.runtime.retention.apply_call_retention()
            await until_gone(api, org, old_sids)

        after = {
            "january": await stats(api, org, JANUARY),
            "both": await stats(api, org, JANUARY_TO_FEBRUARY),
        }
        assert after == before
        assert (before["january"]["total_calls"], before["january"]["total_mappings"]) == (3, 3)
        assert (before["both"]["total_calls"], before["both"]["total_mappings"]) == (4, 3)

        for sid in old_sids:
            gone = await api.client.get(f"/v1/masking/calls/{sid}", headers=org.auth)
            assert gone.status_code == 404
            deliveries = await api.client.get(
                "/v1/webhooks/deliveries", headers=org.auth, params={"call_sid": sid}
            )
            assert deliveries.json()["data"] == []
        kept = await api.client.get(f"/v1/masking/calls/{recent['call_sid']}", headers=org.auth)
        assert kept.json()["data"] == recent
        logs = await api.client.get("/v1/masking/call-logs", headers=org.auth)
        assert [c["call_sid"] for c in logs.json()["data"]] == [recent["call_sid"]]
        feed = (await api.client.get("/v1/events", headers=org.auth)).json()["data"]
        assert {e["call_sid"] for e in feed} == {recent["call_sid"]}
        stored = sorted(p.name for p in (data_dir / "recordings" / org.id).iterdir())
        assert stored == [f"{recent['call_sid']}.mp3"]
        assert (await api.client.get("/v1/masking/billing", headers=org.auth)).json() == balance

        async with api.runtime.db.read() as session:
            charges = (
                await session.execute(
                    select(LedgerEntry.call_sid, LedgerEntry.amount)
                    .where(LedgerEntry.org_id == org.id, LedgerEntry.kind == "call_charge")
                    .order_by(LedgerEntry.id)
                )
            ).all()
            assert [tuple(row) for row in charges] == [
                (None, -150),
                (None, -150),
                (recent["call_sid"], -150),
            ]
            assert await wallet.ledger_sum(session, org.id) == 9550
            leftovers = [
                await session.scalar(
                    select(func.count()).where(NumberLease.call_sid.in_(old_sids))
                ),
                await session.scalar(
                    select(func.count()).where(
                        IdempotencyKey.org_id == org.id, IdempotencyKey.key == "retention-1"
                    )
                ),
            ]
            assert leftovers == [0, 0]


async def test_an_old_call_whose_webhook_is_still_due_is_kept_until_it_is_delivered(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    data_dir = tmp_path / "data"
    settings = call_settings(database_url, data_dir)
    # The receiver asks for 10 h: the call's first event stays pending, the rest wait.
    receiver.default = (503, {"Retry-After": "36000"})
    async with running_api(settings, clock=ScaledClock(SPEED, start=OLD)) as api:
        org = await api.make_org("retention-due", balance="100", numbers=1)
        placed = await place(api, org, webhook_url=receiver.url, record=False)
        call = await wait_for(api, org, placed["call_sid"])
    keep_30_days = call_settings(database_url, data_dir, call_retention_days=30)
    async with running_api(keep_30_days, clock=ScaledClock(SPEED, start=RECENT)) as api:
        assert api.runtime.retention is not None
        await api.runtime.retention.apply_call_retention()
        kept = await api.client.get(f"/v1/masking/calls/{call['call_sid']}", headers=org.auth)
        assert (kept.status_code, kept.json()["data"]) == (200, call)
        deliveries = await api.client.get(
            "/v1/webhooks/deliveries", headers=org.auth, params={"call_sid": call["call_sid"]}
        )
        assert {d["status"] for d in deliveries.json()["data"]} == {"pending"}
