"""Placing calls through the API and waiting for them to reach a status."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from maskline.settings import Settings
from tests.support.api import Api, OrgHandle
from tests.support.waits import eventually_value

TERMINAL = ("completed", "failed", "no-answer")
# How long an engine's claim on a call lasts when MASKLINE_ENGINE_LEASE_SEC is unset.
DEFAULT_LEASE = timedelta(seconds=Settings.model_fields["engine_lease_sec"].default)


async def place(api: Api, org: OrgHandle, **body: Any) -> dict[str, Any]:
    body.setdefault("party_a", "9876543210")
    body.setdefault("party_b", "9123456789")
    response = await api.client.post("/v1/masking/calls", headers=org.auth, json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def wait_for(
    api: Api,
    org: OrgHandle,
    call_sid: str,
    statuses: tuple[str, ...] = TERMINAL,
    *,
    within: float = 60.0,
) -> dict[str, Any]:
    """Poll the call until its status is one of ``statuses`` (a deadline, not a sleep).
    The deadline is generous: a recorded call settles only once its MP3 is encoded, and
    on a loaded machine (CI runs four test processes on two cores) that has taken over
    20 s.

    An ended call is waited for until it has settled: its recording, if any, no
    longer ``pending``, so the object returned is the last it will ever be.
    """

    async def fetch() -> dict[str, Any]:
        response = await api.client.get(f"/v1/masking/calls/{call_sid}", headers=org.auth)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def reached(data: dict[str, Any]) -> bool:
        settling = data["status"] in TERMINAL and data["recording_status"] == "pending"
        return data["status"] in statuses and not settling

    return await eventually_value(
        fetch, reached, what=f"call {call_sid} to be settled in {statuses}", within=within
    )


async def billing(api: Api, org: OrgHandle) -> dict[str, Any]:
    response = await api.client.get("/v1/masking/billing", headers=org.auth)
    data: dict[str, Any] = response.json()["data"]
    return data


async def post_at_once(api: Api, org: OrgHandle, bodies: list[dict[str, Any]]) -> list[Any]:
    """POST every body at once (the calls share the writer's batches): the responses, in
    the bodies' order."""
    return list(
        await asyncio.gather(
            *[api.client.post("/v1/masking/calls", headers=org.auth, json=b) for b in bodies]
        )
    )


async def busy_calls_one_by_one(
    api: Api, org: OrgHandle, count: int, *, gap_sec: float = 0.0
) -> None:
    """Place ``count`` calls one after another, each to a busy A (0001, SPEC §8's sim),
    waiting for each to end and then ``gap_sec``: two events a call, committed apart, each
    a wake-up of the worker's loops."""
    for n in range(count):
        placed = await place(api, org, party_a=f"9876{n:02d}0001", party_b=f"9123{n:02d}4567")
        await wait_for(api, org, placed["call_sid"])
        if gap_sec:
            await asyncio.sleep(gap_sec)
