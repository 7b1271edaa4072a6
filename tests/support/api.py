"""An API under test: the real app with its lifespan, spoken to over HTTP (ASGI)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from maskline.app import create_app
from maskline.kit.clock import Clock
from maskline.kit.money import parse_rupees
from maskline.numbers import service as pool
from maskline.onboarding import service as onboarding
from maskline.onboarding.sandbox import SandboxCreated
from maskline.orgs.service import OrgTerms
from maskline.runtime import Runtime
from maskline.settings import Settings


@dataclass(frozen=True)
class OrgHandle:
    id: str
    name: str
    api_key: str
    webhook_secret: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    announced: list[SandboxCreated] = field(default_factory=list)

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    async def make_org(
        self,
        name: str,
        *,
        balance: str = "0",
        terms: OrgTerms | None = None,
        sandbox: bool = False,
        numbers: int = 0,
    ) -> OrgHandle:
        """A new organisation (and ``numbers`` masked numbers of its own)."""
        async with self.runtime.db.write() as session:
            created = await onboarding.create_org(
                session,
                name,
                box=self.runtime.box,
                now=self.runtime.clock.now(),
                terms=terms,
                opening_balance=parse_rupees(balance),
                sandbox=sandbox,
            )
            owned = [f"9180{secrets.randbelow(10**8):08d}" for _ in range(numbers)]
            if owned:
                await pool.add_numbers(
                    session, owned, org_id=created.org.id, now=self.runtime.clock.now()
                )
        return OrgHandle(created.org.id, created.org.name, created.api_key, created.webhook_secret)


@asynccontextmanager
async def running_api(
    settings: Settings, *, clock: Clock | None = None, role: str = "all"
) -> AsyncIterator[Api]:
    announced: list[SandboxCreated] = []
    app = create_app(settings, clock=clock, announce=announced.append, role=role)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app=app, client=client, announced=announced)


class ShiftedClock:
    """The system clock moved by a fixed offset (to reach an expiry without waiting)."""

    def __init__(self, base: Clock, offset: timedelta) -> None:
        self._base = base
        self._offset = offset

    def now(self) -> datetime:
        return self._base.now() + self._offset

    def monotonic(self) -> float:
        return self._base.monotonic() + self._offset.total_seconds()

    async def sleep(self, seconds: float) -> None:
        await self._base.sleep(seconds)


class ManualClock:
    """A clock that stands still until the test moves it (``advance``): what the app
    reads of time is then exact, however slow the machine. Its ``sleep`` waits real
    time, so that the app's own loops still idle."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._monotonic = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
