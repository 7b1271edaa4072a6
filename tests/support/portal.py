"""A portal user signed in over HTTP (no browser): the forms' CSRF tokens read from the
pages, as a browser would send them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from maskline.accounts import service as accounts
from tests.support.api import Api

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match is not None, html[:500]
    return match.group(1)


@dataclass
class PortalUser:
    client: httpx.AsyncClient
    org_id: str

    async def post_form(self, page: str, action: str, data: dict[str, str]) -> httpx.Response:
        """Open ``page``, then post ``data`` with its CSRF token to ``action``."""
        opened = await self.client.get(page)
        assert opened.status_code == 200, opened.text[:500]
        return await self.client.post(action, data={"csrf": csrf_of(opened.text), **data})


async def signed_in(api: Api, org_id: str, email: str, role: str = "owner") -> PortalUser:
    """A new member of ``org_id`` with ``role``, signed in by a one-time link, on a client
    of its own (its own cookies)."""
    runtime = api.runtime
    now = runtime.clock.now()
    async with runtime.db.write() as session:
        user = await accounts.create_user(
            session, email=email, name="Test User", password_hash=None, now=now, verified=True
        )
        await accounts.add_member(session, org_id, user, role, now=now)
        raw = await accounts.issue_link(session, user.id, "sign_in", now=now)
    client = httpx.AsyncClient(
        transport=api.client._transport,  # the same app, another cookie jar
        base_url=str(api.client.base_url),
    )
    opened = await client.get(f"/sign-in/link?token={raw}")
    signed = await client.post("/sign-in/link", data={"csrf": csrf_of(opened.text), "token": raw})
    assert signed.status_code == 303, signed.text[:500]
    return PortalUser(client=client, org_id=org_id)
