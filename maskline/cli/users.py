"""``maskline user``: portal users of an organisation (SPEC §9, §12)."""

from __future__ import annotations

import click
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.accounts import service as accounts
from maskline.accounts.mail import Mailer, invitation
from maskline.cli.context import Command, run
from maskline.cli.options import json_option, org_option
from maskline.cli.output import emit
from maskline.orgs import service as orgs


@click.group()
def user() -> None:
    """Portal users."""


@user.command("create")
@org_option
@click.option("--email", required=True, help="The user's email address.")
@click.option(
    "--role",
    default="developer",
    show_default=True,
    help="owner, developer or billing.",
)
@click.option("--name", default=None, help="The user's name (default: the email's local part).")
@json_option
def create(org_ref: str, email: str, role: str, name: str | None, as_json: bool) -> None:
    """Add a user to an organisation (a new user, or an existing one) and print a
    one-time sign-in link (24 hours)."""
    accounts.check_role(role)
    address, _key = accounts.check_email(email)

    async def work(cmd: Command) -> dict[str, object]:
        now = cmd.clock.now()

        async def change(session: AsyncSession) -> dict[str, object]:
            org = await orgs.resolve_org(session, org_ref)
            found = await accounts.find_user(session, address)
            if found is None:
                found = await accounts.create_user(
                    session,
                    email=address,
                    name=name or address.partition("@")[0],
                    password_hash=None,
                    now=now,
                )
            await accounts.add_member(session, org.id, found, role, now=now)
            raw = await accounts.issue_link(session, found.id, "sign_in", now=now)
            return {
                "id": found.id,
                "email": found.email,
                "role": role,
                "sign_in_link": accounts.link_url(cmd.settings.public_url, "sign_in", raw),
            }

        return await cmd.run_transaction(change)

    emit(run(work), as_json=as_json)


@user.command("invite")
@org_option
@click.option("--email", required=True, help="The user's email address.")
@click.option(
    "--role",
    default="developer",
    show_default=True,
    help="owner, developer or billing.",
)
@json_option
def invite(org_ref: str, email: str, role: str, as_json: bool) -> None:
    """Add a user to an organisation and mail them a one-time sign-in link (24 hours)
    through MASKLINE_SMTP_URL (SPEC §12: how users join when sign-up is by invitation)."""
    accounts.check_role(role)
    accounts.check_email(email)

    async def work(cmd: Command) -> dict[str, object]:
        now = cmd.clock.now()

        async def change(session: AsyncSession) -> tuple[str, accounts.Invited]:
            org = await orgs.resolve_org(session, org_ref)
            return org.name, await accounts.invite(session, org.id, email, role, now=now)

        org_name, invited = await cmd.run_transaction(change)
        link = accounts.link_url(cmd.settings.public_url, "sign_in", invited.link)
        subject, body = invitation(org_name, invited.role, link, by="The operator")
        await Mailer(cmd.settings).send(invited.user.email, subject, body)
        return {"id": invited.user.id, "email": invited.user.email, "role": invited.role}

    emit(run(work), as_json=as_json)


@user.command("list")
@org_option
@json_option
def list_(org_ref: str, as_json: bool) -> None:
    """List an organisation's users and their roles."""

    async def work(cmd: Command) -> list[dict[str, object]]:
        async with cmd.db.read() as session:
            org = await orgs.resolve_org(session, org_ref)
            return [
                {
                    "id": found.id,
                    "email": found.email,
                    "name": found.name,
                    "role": role,
                    "verified": found.verified_at is not None,
                }
                for found, role in await accounts.members(session, org.id)
            ]

    emit({"users": run(work)}, as_json=as_json)


@user.command("remove")
@org_option
@click.option("--email", required=True, help="The user's email address.")
@json_option
def remove(org_ref: str, email: str, as_json: bool) -> None:
    """Remove a user from an organisation (the account stays for its other ones)."""

    async def work(cmd: Command) -> dict[str, object]:
        async def change(session: AsyncSession) -> dict[str, object]:
            org = await orgs.resolve_org(session, org_ref)
            await accounts.remove_member(session, org.id, email)
            return {"removed": True}

        return await cmd.run_transaction(change)

    emit(run(work), as_json=as_json)
