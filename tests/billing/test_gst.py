"""SPEC §4: top-ups carry a GST invoice: CGST+SGST or IGST, half-up rounding, numbering."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from maskline.billing.invoices import top_up
from maskline.billing.schemas import InvoiceOut
from maskline.errors import InvalidRequest
from maskline.kit.gstin import InvalidGstin, gstin_check_character, validate_gstin
from maskline.kit.money import paise_to_rupees, parse_rupees
from maskline.onboarding import service as onboarding
from maskline.orgs.service import OrgTerms
from tests.conftest import Cli
from tests.support.api import Api


class TestGstin:
    def test_the_spec_example_is_valid(self) -> None:
        assert validate_gstin("27AAPFU0939F1ZV") == "27AAPFU0939F1ZV"
        assert gstin_check_character("27AAPFU0939F1Z") == "V"

    def test_a_wrong_check_character_is_refused(self) -> None:
        with pytest.raises(InvalidGstin, match="check character does not verify"):
            validate_gstin("27AAPFU0939F1ZW")

    @pytest.mark.parametrize(
        ("gstin", "reason"),
        [
            ("27AAPFU0939F1Z", "15 characters"),
            ("99AAPFU0939F1ZV", "not a valid GST state code"),
            ("2712345678901ZV", "not shaped like a GSTIN"),
        ],
    )
    def test_malformed_gstins_are_refused(self, gstin: str, reason: str) -> None:
        with pytest.raises(InvalidGstin, match=reason):
            validate_gstin(gstin)

    def test_lower_case_is_normalised(self) -> None:
        assert validate_gstin(" 27aapfu0939f1zv ") == "27AAPFU0939F1ZV"


class TestMoney:
    @pytest.mark.parametrize(
        ("paise", "rupees"), [(300, 3), (150, 1.5), (9850, 98.5), (1001, 10.01), (0, 0), (1, 0.01)]
    )
    def test_rupees_are_numbers_with_at_most_two_decimals(self, paise: int, rupees: float) -> None:
        value = paise_to_rupees(paise)
        assert value == rupees
        assert type(value) is type(rupees)

    @pytest.mark.parametrize("text", ["10.001", "-1", "ten", "NaN", "Infinity"])
    def test_bad_rupee_amounts_are_refused(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"\S"):
            parse_rupees(text)


def _amounts(invoice: dict[str, object]) -> tuple[object, ...]:
    return tuple(invoice[k] for k in ("amount", "cgst", "sgst", "igst", "total"))


class TestTopUpInvoices:
    def test_same_state_is_cgst_plus_sgst_rounded_half_up(self, cli: Cli) -> None:
        cli.ok("org", "create", "gst-intra", "--state", "24")
        invoice = cli.ok("wallet", "topup", "--org", "gst-intra", "10.01", "--reference", "pay_1")
        assert _amounts(invoice) == (10.01, 0.9, 0.9, 0, 11.81)
        assert invoice["place_of_supply"] == "24"
        assert invoice["gstin"] is None
        assert invoice["sac"] == "9984"
        assert invoice["currency"] == "INR"
        assert invoice["reference"] == "pay_1"
        assert invoice["recipient_name"] == "gst-intra"

    def test_other_state_by_gstin_is_igst(self, cli: Cli) -> None:
        cli.ok("org", "create", "gst-inter", "--gstin", "27AAPFU0939F1ZV")
        invoice = cli.ok("wallet", "topup", "--org", "gst-inter", "10.01")
        assert _amounts(invoice) == (10.01, 0, 0, 1.8, 11.81)
        assert (invoice["gstin"], invoice["place_of_supply"]) == ("27AAPFU0939F1ZV", "27")

    def test_no_gstin_and_no_state_is_taxed_as_the_providers_state(self, cli: Cli) -> None:
        cli.ok("org", "create", "gst-default")
        invoice = cli.ok("wallet", "topup", "--org", "gst-default", "1000")
        assert _amounts(invoice) == (1000, 90, 90, 0, 1180)

    def test_half_a_paisa_rounds_up_per_component(self, cli: Cli) -> None:
        # 9% of Rs 10.50 is 94.5 paise → 95 each; 18% of it is 189 paise exactly.
        cli.ok("org", "create", "gst-half", "--state", "24")
        cli.ok("org", "create", "gst-half-igst", "--state", "29")
        intra = cli.ok("wallet", "topup", "--org", "gst-half", "10.50")
        inter = cli.ok("wallet", "topup", "--org", "gst-half-igst", "10.50")
        assert _amounts(intra) == (10.5, 0.95, 0.95, 0, 12.4)
        assert _amounts(inter) == (10.5, 0, 0, 1.89, 12.39)

    def test_the_top_up_reaches_the_wallet_without_the_gst(self, cli: Cli) -> None:
        cli.ok("org", "create", "gst-credit", "--balance", "5")
        cli.ok("wallet", "topup", "--org", "gst-credit", "20")
        assert cli.ok("wallet", "show", "--org", "gst-credit")["balance"] == 25

    def test_below_ten_rupees_is_refused(self, cli: Cli) -> None:
        cli.ok("org", "create", "gst-min")
        result = cli("wallet", "topup", "--org", "gst-min", "9.99")
        assert result.code == 1
        assert result.stderr == "error: amount must be at least Rs 10 before GST.\n"
        assert cli.ok("wallet", "show", "--org", "gst-min")["balance"] == 0

    async def test_invoice_numbers_are_sequential_per_financial_year(self, api: Api) -> None:
        db, settings = api.runtime.db, api.runtime.settings
        async with db.write() as session:
            org = await onboarding.create_org(
                session,
                "gst-numbering",
                box=api.runtime.box,
                now=datetime.now(UTC),
                terms=OrgTerms(state_code="24"),
            )
        moments = [
            datetime(2031, 3, 31, 18, 29, tzinfo=UTC),  # 23:59 IST, 31 March: FY 2030-31
            datetime(2031, 3, 31, 18, 31, tzinfo=UTC),  # 00:01 IST, 1 April: FY 2031-32
            datetime(2031, 4, 2, 6, 0, tzinfo=UTC),
        ]
        numbers = []
        for moment in moments:
            async with db.write() as session:
                invoice = await top_up(session, org.org, 1000, settings=settings, now=moment)
                numbers.append((invoice.invoice_number, invoice.invoice_date))
        assert numbers == [
            ("ML/3031/000001", "2031-03-31"),
            ("ML/3132/000001", "2031-04-01"),
            ("ML/3132/000002", "2031-04-02"),
        ]

    async def test_a_refused_top_up_uses_no_invoice_number(self, api: Api) -> None:
        db, settings = api.runtime.db, api.runtime.settings
        moment = datetime(2035, 6, 1, tzinfo=UTC)
        async with db.write() as session:
            org = (
                await onboarding.create_org(session, "gst-gapless", box=api.runtime.box, now=moment)
            ).org
        with pytest.raises(InvalidRequest):
            async with db.write() as session:
                await top_up(session, org, 999, settings=settings, now=moment)
        async with db.write() as session:
            invoice = InvoiceOut.build(
                await top_up(session, org, 1000, settings=settings, now=moment)
            )
        assert invoice.invoice_number == "ML/3536/000001"

    async def test_invoices_are_listed_newest_first_with_pages(self, api: Api, cli: Cli) -> None:
        org = await api.make_org("gst-list")
        for amount in ("10", "20", "30"):
            (await cli.ok_async("wallet", "topup", "--org", org.name, amount))
        response = await api.client.get(
            "/v1/masking/billing/invoices?per_page=2&page=1", headers=org.auth
        )
        body = response.json()
        assert [i["amount"] for i in body["data"]] == [30, 20]
        cursor = body["meta"]["next_cursor"]
        assert isinstance(cursor, str)
        assert body["meta"] == {
            "page": 1,
            "per_page": 2,
            "total": 3,
            "total_pages": 2,
            "has_more": True,
            "next_cursor": cursor,
            "total_capped": False,
        }
        page2 = await api.client.get(
            "/v1/masking/billing/invoices?per_page=2&page=2", headers=org.auth
        )
        assert [i["amount"] for i in page2.json()["data"]] == [10]
        by_cursor = await api.client.get(
            "/v1/masking/billing/invoices",
            params={"per_page": 2, "cursor": cursor},
            headers=org.auth,
        )
        assert [i["amount"] for i in by_cursor.json()["data"]] == [10]
        assert by_cursor.json()["meta"]["next_cursor"] is None
