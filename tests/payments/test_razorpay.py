"""SPEC §13 over HTTP: top-up orders through the portal, Checkout's callback and
Razorpay's webhooks against a local Razorpay stand-in (a real HTTP server the official
client talks to), credited exactly once with their invoice and ledger entry."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from maskline.billing import wallet
from maskline.billing.wallet import ledger_sum
from maskline.settings import Settings
from tests.conftest import make_settings
from tests.support.api import Api, ManualClock, OrgHandle, running_api
from tests.support.portal import PortalUser, signed_in
from tests.support.razorpay import (
    KEY_ID,
    KEY_SECRET,
    WEBHOOK_SECRET,
    StandIn,
    razorpay_standin,
    sign,
)

# Gujarat (24) is the provider's state by default; 27 is Maharashtra.
GSTIN_MH = "27AAPFU0939F1ZV"


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with razorpay_standin() as running:
        yield running


def razorpay_settings(database_url: str, data_dir: Path, standin: StandIn) -> Settings:
    return make_settings(
        database_url,
        data_dir,
        razorpay_key_id=KEY_ID,
        razorpay_key_secret=KEY_SECRET,
        razorpay_webhook_secret=WEBHOOK_SECRET,
        razorpay_api_url=standin.url,
        razorpay_checkout_url=standin.checkout_url,
        provider_gstin="24AAACM1234A1Z5",
        provider_name="Maskline Telecom Pvt Ltd",
        provider_address="1 Ring Road, Ahmedabad",
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path, standin: StandIn, clock: ManualClock
) -> AsyncIterator[Api]:
    settings = razorpay_settings(database_url, tmp_path / "data", standin)
    async with running_api(settings, clock=clock) as running:
        yield running


async def owner_of(api: Api, name: str, **profile: str) -> tuple[OrgHandle, PortalUser]:
    org = await api.make_org(name)
    owner = await signed_in(api, org.id, f"owner@{org.id.lower()}.example")
    if profile:
        saved = await owner.post_form(
            f"/o/{org.id}/wallet",
            f"/o/{org.id}/wallet/profile",
            {"legal_name": "", "address": "", "state_code": "", "gstin": "", **profile},
        )
        assert saved.status_code == 303, saved.text[:800]
    return org, owner


async def order_top_up(owner: PortalUser, rupees: str) -> str:
    """The top-up's id, ordered through the wallet page."""
    created = await owner.post_form(
        f"/o/{owner.org_id}/wallet", f"/o/{owner.org_id}/wallet/top-ups", {"amount": rupees}
    )
    assert created.status_code == 303, created.text[:800]
    match = re.fullmatch(
        rf"/o/{owner.org_id}/wallet/top-ups/(top_\w+)", created.headers["location"]
    )
    assert match is not None, created.headers["location"]
    return match.group(1)


def the_order(standin: StandIn, topup_id: str) -> dict[str, Any]:
    return next(o for o in standin.orders.values() if o["receipt"] == topup_id)


async def callback(api: Api, org_id: str, topup_id: str, fields: dict[str, str]) -> httpx.Response:
    # From Razorpay's page: no session cookie, no CSRF token.
    async with httpx.AsyncClient(
        transport=api.client._transport, base_url=str(api.client.base_url)
    ) as stranger:
        return await stranger.post(f"/o/{org_id}/wallet/top-ups/{topup_id}/callback", data=fields)


async def webhook(api: Api, body: bytes, signature: str | None = None) -> httpx.Response:
    return await api.client.post(
        "/v1/payments/razorpay/webhook",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Razorpay-Signature": signature or sign(body, WEBHOOK_SECRET),
        },
    )


async def billing(api: Api, org: OrgHandle) -> dict[str, Any]:
    response = await api.client.get("/v1/masking/billing", headers=org.auth)
    data: dict[str, Any] = response.json()["data"]
    return data


async def invoices(api: Api, org: OrgHandle) -> list[dict[str, Any]]:
    response = await api.client.get("/v1/masking/billing/invoices", headers=org.auth)
    listed: list[dict[str, Any]] = response.json()["data"]
    return listed


async def ledger_topups(api: Api, org: OrgHandle) -> int:
    async with api.runtime.db.read() as session:
        return await ledger_sum(session, org.id)


class TestOrders:
    async def test_a_top_up_orders_the_amount_plus_gst_in_paise_with_the_top_up_as_receipt(
        self, api: Api, standin: StandIn
    ) -> None:
        org, owner = await owner_of(api, "rzp-order", gstin=GSTIN_MH)
        topup_id = await order_top_up(owner, "100")
        order = the_order(standin, topup_id)
        assert order["amount"] == 11800
        assert order["currency"] == "INR"
        page = await owner.client.get(f"/o/{org.id}/wallet/top-ups/{topup_id}")
        assert page.status_code == 200
        assert f'data-order="{order["id"]}"' in page.text
        assert '<dd id="topup-status">created</dd>' in page.text
        assert f"script-src 'self' {standin.url}" in page.headers["content-security-policy"]
        assert f'<script src="{standin.checkout_url}"></script>' in page.text

    @pytest.mark.parametrize(
        ("amount", "message"),
        [
            ("9.99", "amount must be at least Rs 10 before GST."),
            ("10.001", "amount must be in rupees with at most 2 decimals."),
            ("ten", "amount must be in rupees with at most 2 decimals."),
        ],
    )
    async def test_a_bad_amount_is_refused_and_orders_nothing(
        self, api: Api, standin: StandIn, amount: str, message: str
    ) -> None:
        org, owner = await owner_of(api, f"rzp-bad-{amount}")
        refused = await owner.post_form(
            f"/o/{org.id}/wallet", f"/o/{org.id}/wallet/top-ups", {"amount": amount}
        )
        assert refused.status_code == 400
        assert message in refused.text
        assert standin.orders == {}


class TestExactlyOnce:
    async def test_callback_then_webhook_credits_once(self, api: Api, standin: StandIn) -> None:
        org, owner = await owner_of(api, "rzp-cb-wh")
        topup_id = await order_top_up(owner, "100")
        payment = standin.pay(the_order(standin, topup_id)["id"])

        back = await callback(api, org.id, topup_id, standin.callback_fields(payment))
        assert back.status_code == 303
        assert back.headers["location"] == f"/o/{org.id}/wallet/top-ups/{topup_id}"
        late = await webhook(api, standin.event("payment.captured", payment))
        assert late.status_code == 200
        assert late.json() == {"data": {"outcome": "already_credited"}}
        paid = await webhook(api, standin.event("order.paid", payment))
        assert paid.json() == {"data": {"outcome": "already_credited"}}

        assert (await billing(api, org))["balance"] == 100
        listed = await invoices(api, org)
        assert [(i["reference"], i["amount"], i["total"]) for i in listed] == [
            (payment["id"], 100, 118)
        ]
        assert await ledger_topups(api, org) == 10000

    async def test_webhook_then_callback_credits_once(self, api: Api, standin: StandIn) -> None:
        org, owner = await owner_of(api, "rzp-wh-cb")
        topup_id = await order_top_up(owner, "250.50")
        payment = standin.pay(the_order(standin, topup_id)["id"])

        first = await webhook(api, standin.event("payment.captured", payment))
        assert first.json() == {"data": {"outcome": "credited"}}
        back = await callback(api, org.id, topup_id, standin.callback_fields(payment))
        assert back.status_code == 303

        assert (await billing(api, org))["balance"] == 250.5
        assert len(await invoices(api, org)) == 1
        page = await owner.client.get(f"/o/{org.id}/wallet/top-ups/{topup_id}")
        assert '<dd id="topup-status">paid</dd>' in page.text

    async def test_an_authorized_payment_is_captured_then_credited(
        self, api: Api, standin: StandIn
    ) -> None:
        org, owner = await owner_of(api, "rzp-auth")
        topup_id = await order_top_up(owner, "10")
        payment = standin.pay(the_order(standin, topup_id)["id"], status="authorized")
        back = await callback(api, org.id, topup_id, standin.callback_fields(payment))
        assert back.status_code == 303
        assert standin.payments[payment["id"]]["status"] == "captured"
        assert (await billing(api, org))["balance"] == 10


class TestRefusals:
    async def test_an_unverified_webhook_is_400_and_changes_nothing(
        self, api: Api, standin: StandIn
    ) -> None:
        org, owner = await owner_of(api, "rzp-unverified")
        topup_id = await order_top_up(owner, "100")
        payment = standin.pay(the_order(standin, topup_id)["id"])
        body = standin.event("payment.captured", payment)
        for signature in ("0" * 64, "", "not hex at all"):
            refused = await webhook(api, body, signature=signature or "x")
            assert refused.status_code == 400
            assert refused.json()["error"] == {
                "code": "invalid_request",
                "message": "X-Razorpay-Signature does not match the body.",
            }
        assert (await billing(api, org))["balance"] == 0
        assert await invoices(api, org) == []

    async def test_a_forged_callback_signature_credits_nothing(
        self, api: Api, standin: StandIn
    ) -> None:
        org, owner = await owner_of(api, "rzp-forged")
        topup_id = await order_top_up(owner, "100")
        payment = standin.pay(the_order(standin, topup_id)["id"])
        fields = {**standin.callback_fields(payment), "razorpay_signature": "ab" * 32}
        refused = await callback(api, org.id, topup_id, fields)
        assert refused.status_code == 400
        assert (await billing(api, org))["balance"] == 0

    async def test_a_failed_payment_credits_nothing(self, api: Api, standin: StandIn) -> None:
        org, owner = await owner_of(api, "rzp-failed")
        topup_id = await order_top_up(owner, "100")
        payment = standin.pay(the_order(standin, topup_id)["id"], status="failed")
        back = await callback(api, org.id, topup_id, standin.failure_fields(payment))
        assert back.status_code == 303
        assert back.headers["location"].endswith("?failed=1")
        # A failed payment's own callback fields, signed, credit nothing either.
        signed = await callback(api, org.id, topup_id, standin.callback_fields(payment))
        assert signed.headers["location"].endswith("?failed=1")
        ignored = await webhook(api, standin.event("payment.failed", payment))
        assert ignored.json() == {"data": {"outcome": "ignored"}}
        assert (await billing(api, org))["balance"] == 0
        assert await invoices(api, org) == []

    async def test_an_amount_mismatch_credits_nothing_and_is_flagged(
        self, api: Api, standin: StandIn
    ) -> None:
        org, owner = await owner_of(api, "rzp-mismatch")
        topup_id = await order_top_up(owner, "100")
        payment = standin.pay(the_order(standin, topup_id)["id"], amount=100)
        flagged = await webhook(api, standin.event("payment.captured", payment))
        assert flagged.json() == {"data": {"outcome": "flagged"}}
        again = await callback(api, org.id, topup_id, standin.callback_fields(payment))
        assert again.status_code == 303
        assert (await billing(api, org))["balance"] == 0
        page = await owner.client.get(f"/o/{org.id}/wallet/top-ups/{topup_id}")
        assert '<dd id="topup-status">flagged</dd>' in page.text
        audit = await owner.client.get(f"/o/{org.id}/audit")
        assert f"payment {payment['id']} is 100 INR, the order 11800 INR" in audit.text


class TestRefunds:
    async def test_a_refund_debits_the_share_and_issues_a_credit_note(
        self, api: Api, standin: StandIn
    ) -> None:
        org, owner = await owner_of(api, "rzp-refund", gstin=GSTIN_MH)
        topup_id = await order_top_up(owner, "100")
        payment = standin.pay(the_order(standin, topup_id)["id"])
        await webhook(api, standin.event("payment.captured", payment))
        # Half the payment back, then the rest: the taxes add up to the invoice's.
        half = standin.refund(payment, 5900)
        done = await webhook(api, standin.event("refund.processed", payment, half))
        assert done.json() == {"data": {"outcome": "refunded"}}
        repeated = await webhook(api, standin.event("refund.processed", payment, half))
        assert repeated.json() == {"data": {"outcome": "ignored"}}
        assert (await billing(api, org))["balance"] == 50
        rest = standin.refund(payment, 5900)
        await webhook(api, standin.event("refund.processed", payment, rest))
        assert (await billing(api, org))["balance"] == 0
        assert await ledger_topups(api, org) == 0

        page = await owner.client.get(f"/o/{org.id}/wallet")
        rows = re.findall(r"<tr><td>(ML/CN/\d{4}/\d{6})</td>.*?</tr>", page.text, re.S)
        assert len(rows) == 2
        numbers = sorted(rows)
        assert [n.rsplit("/", 1)[1] for n in numbers][-2:] == [
            numbers[0].rsplit("/", 1)[1],
            numbers[1].rsplit("/", 1)[1],
        ]
        assert int(numbers[1].rsplit("/", 1)[1]) == int(numbers[0].rsplit("/", 1)[1]) + 1
        # Interstate (27 → 24): IGST 18%; each note Rs 50 + Rs 9 IGST.
        notes = re.findall(
            r"<tr><td>ML/CN/\d{4}/\d{6}</td><td>[\d-]+</td>\s*"
            r"<td>Rs ([\d.]+)</td><td>Rs ([\d.]+)</td>\s*<td>Rs ([\d.]+)</td>"
            r"<td>Rs ([\d.]+)</td>\s*<td>Rs ([\d.]+)</td></tr>",
            page.text,
        )
        assert notes == [("50.00", "0.00", "0.00", "9.00", "59.00")] * 2

    async def test_a_refund_of_spent_money_debits_what_is_left_and_records_the_rest(
        self, api: Api, standin: StandIn
    ) -> None:
        org, owner = await owner_of(api, "rzp-spent")
        topup_id = await order_top_up(owner, "100")
        payment = standin.pay(the_order(standin, topup_id)["id"])
        await webhook(api, standin.event("payment.captured", payment))
        async with api.runtime.db.write() as session:
            await wallet.debit(
                session, org.id, 7000, kind="adjustment", now=api.runtime.clock.now()
            )
        refund = standin.refund(payment)
        await webhook(api, standin.event("refund.processed", payment, refund))
        assert (await billing(api, org))["balance"] == 0
        audit = await owner.client.get(f"/o/{org.id}/audit")
        assert "Rs 118 refunded" in audit.text
        assert "Rs 30 debited" in audit.text
        assert "Rs 70 not debited" in audit.text


class TestExpiry:
    async def test_an_unpaid_order_expires_after_24_hours(
        self, api: Api, standin: StandIn, clock: ManualClock
    ) -> None:
        org, owner = await owner_of(api, "rzp-expiry")
        topup_id = await order_top_up(owner, "100")
        clock.advance(24 * 3600 - 1)
        # (The owner's session has idled out by then: another member looks.)
        later = await signed_in(api, org.id, "later@rzp-expiry.example")
        page = await later.client.get(f"/o/{org.id}/wallet/top-ups/{topup_id}")
        assert '<dd id="topup-status">created</dd>' in page.text
        clock.advance(1)
        page = await later.client.get(f"/o/{org.id}/wallet/top-ups/{topup_id}")
        assert '<dd id="topup-status">expired</dd>' in page.text
        assert "data-razorpay-key" not in page.text
        assert (await billing(api, org))["balance"] == 0


class TestInvoicePdf:
    async def test_the_invoice_pdf_reads_back_with_its_number_gstins_sac_split_and_total(
        self, api: Api, standin: StandIn
    ) -> None:
        org, owner = await owner_of(
            api, "rzp-pdf", gstin="24AAPFU0939F1Z1", legal_name="PDF Traders LLP"
        )
        topup_id = await order_top_up(owner, "100")
        payment = standin.pay(the_order(standin, topup_id)["id"])
        await webhook(api, standin.event("payment.captured", payment))
        [invoice] = await invoices(api, org)
        response = await api.client.get(
            f"/v1/masking/billing/invoices/{invoice['id']}.pdf", headers=org.auth
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        text = PdfReader(io.BytesIO(response.content)).pages[0].extract_text()
        assert invoice["invoice_number"] in text
        assert "GSTIN: 24AAACM1234A1Z5" in text
        assert "GSTIN: 24AAPFU0939F1Z1" in text
        assert "PDF Traders LLP" in text
        assert "9984" in text
        assert "CGST 9% Rs 9.00" in text
        assert "SGST 9% Rs 9.00" in text
        assert "IGST" not in text
        assert "Total Rs 118.00" in text
        assert "Rupees one hundred eighteen only" in text
        # The portal serves the same file to the wallet's members.
        portal = await owner.client.get(f"/o/{org.id}/invoices/{invoice['id']}.pdf")
        assert portal.content[:5] == b"%PDF-"

    async def test_another_organisations_invoice_is_404(self, api: Api, standin: StandIn) -> None:
        org, owner = await owner_of(api, "rzp-pdf-owner")
        other = await api.make_org("rzp-pdf-other")
        topup_id = await order_top_up(owner, "10")
        payment = standin.pay(the_order(standin, topup_id)["id"])
        await webhook(api, standin.event("payment.captured", payment))
        [invoice] = await invoices(api, org)
        response = await api.client.get(
            f"/v1/masking/billing/invoices/{invoice['id']}.pdf", headers=other.auth
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
