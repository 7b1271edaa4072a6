"""SPEC §12 over HTTP: the Members page (invite by a mailed sign-in link, change role,
remove; never the last owner), ``maskline user invite``, the Account page (name,
password, sessions), and the API keys page's POST/redirect/GET."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from maskline.accounts import service as accounts
from maskline.accounts.service import LAST_OWNER
from tests.conftest import Cli, make_settings
from tests.support.api import Api, running_api
from tests.support.mailbox import Mailbox, mailbox
from tests.support.portal import PortalUser, csrf_of, signed_in

pytestmark = pytest.mark.database

NEW_PASSWORD = "a long new password"


@pytest.fixture
def mail() -> Iterator[Mailbox]:
    with mailbox() as running:
        yield running


@pytest.fixture
async def api(database_url: str, tmp_path: Path, mail: Mailbox) -> AsyncIterator[Api]:
    settings = make_settings(database_url, tmp_path / "data", smtp_url=mail.url)
    async with running_api(settings) as running:
        yield running


def sign_in_link(mail: Mailbox, to: str) -> str:
    [message] = mail.to(to)
    match = re.search(r"(http://\S+/sign-in/link\?token=(\S+))", message.get_content())
    assert match is not None
    return match.group(2)


async def follow_link(api: Api, token: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=api.client._transport, base_url="http://testserver")
    opened = await client.get(f"/sign-in/link?token={token}")
    signed = await client.post("/sign-in/link", data={"csrf": csrf_of(opened.text), "token": token})
    assert signed.status_code == 303
    return client


async def another_session(api: Api, email: str) -> httpx.AsyncClient:
    """A second browser of an existing user, signed in by a new one-time link."""
    runtime = api.runtime
    async with runtime.db.write() as session:
        user = await accounts.find_user(session, email)
        assert user is not None
        raw = await accounts.issue_link(session, user.id, "sign_in", now=runtime.clock.now())
    return await follow_link(api, raw)


async def audit_actions(owner: PortalUser) -> list[tuple[str, str]]:
    page = await owner.client.get(f"/o/{owner.org_id}/audit")
    rows = re.findall(r'<tr data-action="([a-z._]+)">.*?<td class="detail">([^<]*)</td>', page.text)
    return [(action, detail.replace("&gt;", ">")) for action, detail in rows]


class TestMembers:
    async def test_an_owner_invites_by_email_and_the_invitee_signs_in_with_the_role(
        self, api: Api, mail: Mailbox
    ) -> None:
        org = await api.make_org("members-invite")
        owner = await signed_in(api, org.id, "boss@members-invite.example")
        members = f"/o/{org.id}/members"
        sent = await owner.post_form(
            members, members, {"email": "Dev@Example.in", "role": "developer"}
        )
        assert sent.status_code == 303
        assert sent.headers["location"] == f"{members}?invited=1"
        [message] = mail.to("Dev@Example.in")
        assert message["Subject"] == "You are invited to members-invite on maskline"
        invitee = await follow_link(api, sign_in_link(mail, "Dev@Example.in"))
        assert (await invitee.get(f"/o/{org.id}/keys")).status_code == 200
        assert (await invitee.get(members)).status_code == 403
        listed = await owner.client.get(members)
        assert re.search(r'data-member="Dev@Example.in" data-role="developer"', listed.text)
        assert ("member.invited", "Invited Dev@Example.in as developer") in await audit_actions(
            owner
        )

    async def test_a_bad_invitation_is_a_clear_400(self, api: Api) -> None:
        org = await api.make_org("members-bad")
        owner = await signed_in(api, org.id, "boss@members-bad.example")
        members = f"/o/{org.id}/members"
        bad = await owner.post_form(members, members, {"email": "nope", "role": "developer"})
        assert bad.status_code == 400
        assert "email must be an email address, like you@example.com." in bad.text
        bad = await owner.post_form(members, members, {"email": "a@b.in", "role": "admin"})
        assert bad.status_code == 400
        assert "role must be one of owner, developer, billing." in bad.text

    async def test_the_last_owner_is_never_demoted_or_removed(self, api: Api) -> None:
        org = await api.make_org("members-last")
        owner = await signed_in(api, org.id, "boss@members-last.example")
        other = await signed_in(api, org.id, "dev@members-last.example", role="developer")
        members = f"/o/{org.id}/members"
        page = await owner.client.get(members)
        ids = dict(
            re.findall(
                r'action="/o/[^/]+/members/(usr_\w+)/role".*?Role of ([^<]+)<', page.text, re.S
            )
        )
        boss = next(i for i, e in ids.items() if e.startswith("boss@"))
        dev = next(i for i, e in ids.items() if e.startswith("dev@"))

        demoted = await owner.post_form(members, f"{members}/{boss}/role", {"role": "billing"})
        assert demoted.status_code == 409
        assert LAST_OWNER in demoted.text
        removed = await owner.post_form(members, f"{members}/{boss}/remove", {})
        assert removed.status_code == 409
        assert LAST_OWNER in removed.text

        promoted = await owner.post_form(members, f"{members}/{dev}/role", {"role": "owner"})
        assert promoted.status_code == 303
        assert (await other.client.get(members)).status_code == 200
        demoted = await owner.post_form(members, f"{members}/{boss}/role", {"role": "billing"})
        assert demoted.status_code == 303
        assert (await owner.client.get(members)).status_code == 403
        gone = await other.post_form(members, f"{members}/{boss}/remove", {})
        assert gone.status_code == 303
        assert (await owner.client.get(f"/o/{org.id}")).status_code == 404
        assert await audit_actions(other) == [
            ("member.removed", "boss@members-last.example"),
            ("member.role_changed", "boss@members-last.example: owner → billing"),
            ("member.role_changed", "dev@members-last.example: developer → owner"),
        ]

    async def test_a_user_of_another_organisation_is_not_a_member_here(self, api: Api) -> None:
        mine = await api.make_org("members-mine")
        theirs = await api.make_org("members-theirs")
        owner = await signed_in(api, mine.id, "boss@members-mine.example")
        their_owner = await signed_in(api, theirs.id, "boss@members-theirs.example")
        listed = await their_owner.client.get(f"/o/{theirs.id}/members")
        [their_id] = re.findall(r"/members/(usr_\w+)/role", listed.text)
        members = f"/o/{mine.id}/members"
        for action in (f"{members}/{their_id}/role", f"{members}/{their_id}/remove"):
            answer = await owner.post_form(members, action, {"role": "developer"})
            assert answer.status_code == 404, action
        assert (await owner.client.get(f"{members}/{their_id}/remove")).status_code == 404
        # Nor can an owner of this organisation reach the other one's Members page.
        assert (await owner.client.get(f"/o/{theirs.id}/members")).status_code == 404


class TestUserInviteCommand:
    def test_invite_mails_a_sign_in_link(self, cli: Cli, mail: Mailbox) -> None:
        cli.env["MASKLINE_SMTP_URL"] = mail.url
        cli.ok("org", "create", "cli-invite")
        invited = cli.ok(
            "user",
            "invite",
            "--org",
            "cli-invite",
            "--email",
            "Ops@Example.in",
            "--role",
            "billing",
        )
        assert invited["email"] == "Ops@Example.in"
        assert invited["role"] == "billing"
        assert set(invited) == {"id", "email", "role"}
        [message] = mail.to("Ops@Example.in")
        assert message["Subject"] == "You are invited to cli-invite on maskline"
        assert "The operator added you to cli-invite on maskline as billing." in (
            message.get_content()
        )
        assert re.search(
            r"http://127\.0\.0\.1:8000/sign-in/link\?token=[\w-]{43}\r?\n", message.get_content()
        )
        listed = cli.ok("user", "list", "--org", "cli-invite")["users"]
        assert [(u["email"], u["role"]) for u in listed] == [("Ops@Example.in", "billing")]  # type: ignore[index]


class TestKeyCreation:
    async def test_a_created_key_is_shown_once_after_a_redirect_and_a_reload_creates_none(
        self, api: Api
    ) -> None:
        org = await api.make_org("keys-prg")
        owner = await signed_in(api, org.id, "boss@keys-prg.example")
        keys = f"/o/{org.id}/keys"
        created = await owner.post_form(keys, keys, {"name": "backend"})
        assert created.status_code == 303
        assert created.headers["location"] == keys
        shown = await owner.client.get(keys)
        match = re.search(r'id="new-key" readonly value="(vp_live_\w+)"', shown.text)
        assert match is not None
        again = await owner.client.get(keys)
        assert 'id="new-key"' not in again.text
        assert again.text.count("<td>backend</td>") == 1
        # The key works.
        billing = await api.client.get(
            "/v1/masking/billing", headers={"Authorization": f"Bearer {match.group(1)}"}
        )
        assert billing.status_code == 200


class TestAccount:
    async def test_name_and_a_password_change_that_ends_every_other_session(self, api: Api) -> None:
        org = await api.make_org("account-pw")
        me = await signed_in(api, org.id, "me@account-pw.example")
        account = f"/o/{org.id}/account"
        named = await me.post_form(account, f"{account}/name", {"name": "Meera Iyer"})
        assert named.status_code == 303
        assert "Signed in as" in (page := await me.client.get(account)).text
        assert 'value="Meera Iyer"' in page.text
        # Signed in by link: the first password needs no current one.
        first = await me.post_form(account, f"{account}/password", {"password": NEW_PASSWORD})
        assert first.status_code == 303
        # A second browser signs in with it.
        other = httpx.AsyncClient(transport=api.client._transport, base_url="http://testserver")
        form = await other.get("/sign-in")
        signed = await other.post(
            "/sign-in",
            data={
                "csrf": csrf_of(form.text),
                "email": "me@account-pw.example",
                "password": NEW_PASSWORD,
            },
        )
        assert signed.status_code == 303
        assert (await other.get(account)).status_code == 200
        listed = await me.client.get(account)
        assert len(re.findall(r'<tr data-session="ses_\w+"', listed.text)) == 2

        wrong = await me.post_form(
            account,
            f"{account}/password",
            {"current": "not it at all", "password": "another one!!"},
        )
        assert wrong.status_code == 400
        assert "The current password is not right." in wrong.text
        changed = await me.post_form(
            account, f"{account}/password", {"current": NEW_PASSWORD, "password": "another one!!"}
        )
        assert changed.status_code == 303
        assert (await me.client.get(account)).status_code == 200
        ended = await other.get(account)
        assert ended.status_code == 303
        assert ended.headers["location"].startswith("/sign-in")
        listed = await me.client.get(account)
        assert len(re.findall(r'<tr data-session="ses_\w+"', listed.text)) == 1

    async def test_one_session_is_signed_out_from_another(self, api: Api) -> None:
        org = await api.make_org("account-sessions")
        me = await signed_in(api, org.id, "me@account-sessions.example")
        account = f"/o/{org.id}/account"
        # A second session of the same user, signed in by another link.
        second = await another_session(api, "me@account-sessions.example")
        page = await me.client.get(account)
        current = re.search(r'<tr data-session="(ses_\w+)" data-current="true"', page.text)
        assert current is not None
        [other] = [
            s
            for s in re.findall(r'<tr data-session="(ses_\w+)"', page.text)
            if s != current.group(1)
        ]
        ended = await me.post_form(account, f"{account}/sessions/{other}/end", {})
        assert ended.status_code == 303
        assert (await second.get(account)).status_code == 303
        # Another user's session id is not found, and nothing ends.
        stranger = await signed_in(api, org.id, "you@account-sessions.example")
        refused = await stranger.post_form(
            account, f"{account}/sessions/{current.group(1)}/end", {}
        )
        assert refused.status_code == 404
        assert (await me.client.get(account)).status_code == 200
