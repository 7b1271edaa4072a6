from __future__ import annotations

import click
from sqlalchemy.ext.asyncio import AsyncSession

from maskline.cli.context import Command, run
from maskline.cli.options import json_option, org_option
from maskline.cli.output import emit
from maskline.errors import InvalidRequest
from maskline.kit.pagination import Page
from maskline.orgs import service as orgs
from maskline.webhooks import service, ssrf
from maskline.webhooks.delivery import Clients
from maskline.webhooks.outbox import record_event
from maskline.webhooks.repository import page_of_deliveries
from maskline.webhooks.schemas import DeliveryOut
from maskline.webhooks.tasks import Job, deliver


@click.group()
def webhook() -> None:
    """The organisation's webhook endpoint."""


@webhook.command("set")
@org_option
@click.option("--url", required=True, help="https URL that receives signed events.")
@json_option
def set_(org_ref: str, url: str, as_json: bool) -> None:
    """Point the organisation's events at URL (the signing secret is kept)."""

    async def work(cmd: Command) -> service.EndpointSecret:
        allow_private = cmd.settings.allow_private_webhooks
        await ssrf.resolve(url, allow_private=allow_private)
        box = cmd.box()

        async def change(session: AsyncSession) -> service.EndpointSecret:
            found = await orgs.resolve_org(session, org_ref)
            return await service.set_url(session, found.id, url, box=box, now=cmd.clock.now())

        return await cmd.run_transaction(change)

    result = run(work)
    emit({"url": result.url, "secret": result.secret}, as_json=as_json)


@webhook.command("show")
@org_option
@json_option
def show(org_ref: str, as_json: bool) -> None:
    """Show the endpoint URL, the secret's prefix and whether it is enabled."""

    async def work(cmd: Command) -> dict[str, object]:
        async with cmd.db.read() as session:
            found = await orgs.resolve_org(session, org_ref)
            endpoint = await service.get_endpoint(session, found.id)
            if endpoint is None:
                return {"url": None, "secret_prefix": None, "enabled": False}
            return {
                "url": endpoint.url,
                "secret_prefix": endpoint.secret_prefix,
                "enabled": endpoint.enabled,
            }

    emit(run(work), as_json=as_json)


@webhook.command("rotate-secret")
@org_option
@json_option
def rotate_secret(org_ref: str, as_json: bool) -> None:
    """A new signing secret; for 24 h both the new and the old one sign every delivery."""

    async def work(cmd: Command) -> service.EndpointSecret:
        box = cmd.box()

        async def change(session: AsyncSession) -> service.EndpointSecret:
            found = await orgs.resolve_org(session, org_ref)
            return await service.rotate_secret(session, found.id, box=box, now=cmd.clock.now())

        return await cmd.run_transaction(change)

    result = run(work)
    emit({"url": result.url, "secret": result.secret}, as_json=as_json)


@webhook.command("test")
@org_option
@json_option
def test(org_ref: str, as_json: bool) -> None:
    """Send a signed ``webhook.test`` event to the endpoint now and show the delivery."""

    async def work(cmd: Command) -> DeliveryOut:
        now = cmd.clock.now()

        async def queue(session: AsyncSession) -> Job:
            found = await orgs.resolve_org(session, org_ref)
            endpoint = await service.get_endpoint(session, found.id)
            if endpoint is None or not endpoint.url:
                raise InvalidRequest("This organisation has no webhook URL: run 'webhook set'.")
            recorded = await record_event(
                session,
                org_id=found.id,
                event="webhook.test",
                call_sid=None,
                sequence=0,
                data={"message": "This is a test event from maskline."},
                webhook_url=None,
                now=now,
            )
            assert recorded.delivery_id is not None
            assert recorded.url is not None
            return Job(
                recorded.delivery_id,
                found.id,
                recorded.url,
                recorded.event_id,
                recorded.payload.encode(),
                0,
                True,
                now,
            )

        # Queued and committed first; the attempt (network) follows, once.
        job = await cmd.run_transaction(queue)
        clients = Clients(ca_file=cmd.settings.webhook_ca_file)
        try:
            row = await deliver(
                job,
                db=cmd.db,
                clock=cmd.clock,
                box=cmd.box(),
                clients=clients,
                allow_private=cmd.settings.allow_private_webhooks,
            )
        finally:
            await clients.aclose()
        return DeliveryOut.build(row)

    emit(run(work).model_dump(), as_json=as_json)


@webhook.command("deliveries")
@org_option
@click.option(
    "--status", type=click.Choice(["pending", "succeeded", "failed", "paused"]), default=None
)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@json_option
def deliveries(org_ref: str, status: str | None, limit: int, as_json: bool) -> None:
    """The newest deliveries and their outcome."""

    async def work(cmd: Command) -> list[DeliveryOut]:
        async with cmd.db.read() as session:
            found = await orgs.resolve_org(session, org_ref)
            page = await page_of_deliveries(
                session, found.id, Page(page=1, per_page=limit), status=status
            )
            return [DeliveryOut.build(r) for r in page.rows]

    emit({"deliveries": [d.model_dump() for d in run(work)]}, as_json=as_json)


@webhook.command("replay")
@click.argument("delivery_id")
@json_option
def replay(delivery_id: str, as_json: bool) -> None:
    """Queue a delivery for an immediate new attempt by the worker."""

    async def work(cmd: Command) -> DeliveryOut:
        async def change(session: AsyncSession) -> DeliveryOut:
            row = await service.replay(session, None, delivery_id, now=cmd.clock.now())
            return DeliveryOut.build(row)

        return await cmd.run_transaction(change)

    emit(run(work).model_dump(), as_json=as_json)
