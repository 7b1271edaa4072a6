"""SPEC §9: every operator command, with --json, and one clear line on any error."""

from __future__ import annotations

import re
import uuid

import pytest

from maskline.kit.migrate import head_revision, script_location
from tests.conftest import Cli

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class TestOrgCommands:
    def test_org_create_prints_id_name_key_and_secret(self, cli: Cli) -> None:
        created = cli.ok("org", "create", "cli-acme", "--balance", "12.5", "--rate-paise", "200")
        assert sorted(created) == ["api_key", "id", "name", "webhook_secret"]
        assert created["name"] == "cli-acme"
        assert re.match(r"^org_[A-Za-z0-9]{20}$", str(created["id"]))
        assert str(created["api_key"]).startswith("vp_live_")
        assert re.match(r"^whsec_[A-Za-z0-9+/]{43}=$", str(created["webhook_secret"]))
        billing = cli.ok("wallet", "show", "--org", "cli-acme")
        assert (billing["balance"], billing["rate_per_minute"]) == (12.5, 2)

    def test_org_create_sandbox_gets_a_test_key(self, cli: Cli) -> None:
        created = cli.ok("org", "create", "cli-sandbox", "--sandbox")
        assert str(created["api_key"]).startswith("vp_test_")

    def test_org_update_and_list(self, cli: Cli) -> None:
        created = cli.ok("org", "create", "cli-update")
        updated = cli.ok(
            "org",
            "update",
            str(created["id"]),
            "--gstin",
            "27AAPFU0939F1ZV",
            "--pulse-sec",
            "30",
            "--max-live-calls",
            "7",
        )
        assert updated["id"] == created["id"]
        assert (updated["gstin"], updated["pulse_sec"], updated["max_live_calls"]) == (
            "27AAPFU0939F1ZV",
            30,
            7,
        )
        listed = cli.ok("org", "list")["organisations"]
        assert isinstance(listed, list)
        assert [o["name"] for o in listed if o["id"] == created["id"]] == ["cli-update"]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                ["org", "create", "cli-bad", "--gstin", "27AAPFU0939F1ZW"],
                "GSTIN check character does not verify.",
            ),
            (
                ["org", "create", "cli-bad", "--state", "77"],
                "'77' is not a valid GST state code (01–38 or 97).",
            ),
            (
                ["org", "create", "cli-bad", "--balance", "abc"],
                "--balance: 'abc' is not an amount in rupees.",
            ),
            (
                ["org", "create", "cli-bad", "--pulse-sec", "0"],
                "pulse-sec must be between 1 and 3600.",
            ),
            (
                ["org", "update", "no-such-org", "--pulse-sec", "30"],
                "No organisation with id or name 'no-such-org'.",
            ),
            (
                ["org", "create", "cli-bad", "--rate-paise", "x"],
                "Invalid value for '--rate-paise': 'x' is not a valid integer.",
            ),
            (["org", "frobnicate"], "No such command 'frobnicate'."),
        ],
    )
    def test_bad_input_is_one_line_on_stderr(self, cli: Cli, args: list[str], message: str) -> None:
        result = cli(*args, "--json")
        assert result.code != 0
        assert result.stdout == ""
        assert result.stderr == f"error: {message}\n"

    def test_a_duplicate_name_is_refused(self, cli: Cli) -> None:
        cli.ok("org", "create", "cli-dup")
        result = cli("org", "create", "cli-dup")
        assert (result.code, result.stderr) == (
            1,
            "error: An organisation named 'cli-dup' already exists.\n",
        )


class TestKeyCommands:
    def test_create_list_revoke(self, cli: Cli) -> None:
        org = cli.ok("org", "create", "cli-keys")
        made = cli.ok(
            "key", "create", "--org", "cli-keys", "--rate-limit", "50", "--expires-in", "30"
        )
        assert sorted(made) == ["api_key", "expires_at", "id"]
        assert ISO.match(str(made["expires_at"]))
        keys = cli.ok("key", "list", "--org", str(org["id"]))["keys"]
        assert isinstance(keys, list)
        assert len(keys) == 2
        by_id = {k["id"]: k for k in keys}
        assert by_id[made["id"]]["rate_limit"] == 50
        assert by_id[made["id"]]["prefix"] == str(made["api_key"])[:12]
        assert "api_key" not in by_id[made["id"]]
        revoked = cli.ok("key", "revoke", str(made["id"]))
        assert revoked["id"] == made["id"]
        assert ISO.match(str(revoked["revoked_at"]))
        again = cli.ok("key", "revoke", str(made["id"]))
        assert again["revoked_at"] == revoked["revoked_at"]

    def test_revoking_an_unknown_key_fails(self, cli: Cli) -> None:
        result = cli("key", "revoke", "key_nope")
        assert (result.code, result.stderr) == (1, "error: No API key with id 'key_nope'.\n")

    def test_key_create_rejects_a_zero_rate_limit(self, cli: Cli) -> None:
        cli.ok("org", "create", "cli-keys-bad")
        result = cli("key", "create", "--org", "cli-keys-bad", "--rate-limit", "0")
        assert result.code == 1
        assert result.stderr == "error: --rate-limit must be between 1 and 1000000.\n"


class TestWalletCommands:
    def test_topup_prints_the_invoice_and_show_the_billing_object(self, cli: Cli) -> None:
        org = cli.ok("org", "create", "cli-wallet", "--state", "24")
        invoice = cli.ok("wallet", "topup", "--org", "cli-wallet", "100", "--reference", "r-9")
        assert sorted(invoice) == sorted(
            [
                "id",
                "invoice_number",
                "invoice_date",
                "supplier_name",
                "supplier_address",
                "supplier_gstin",
                "org_id",
                "recipient_name",
                "gstin",
                "place_of_supply",
                "sac",
                "description",
                "amount",
                "cgst",
                "sgst",
                "igst",
                "total",
                "currency",
                "reference",
                "created_at",
            ]
        )
        assert re.match(r"^ML/\d{4}/\d{6}$", str(invoice["invoice_number"]))
        assert invoice["org_id"] == org["id"]
        assert cli.ok("wallet", "show", "--org", "cli-wallet") == {
            "balance": 100,
            "currency": "INR",
            "rate_per_minute": 1.5,
            "reserved": 0,
            "available": 100,
            "minimum_balance": 1.5,
            "low_balance": False,
        }


class TestNumberCommands:
    def test_add_list_remove(self, cli: Cli) -> None:
        org = cli.ok("org", "create", "cli-numbers")
        added = cli.ok("numbers", "add", "+91 80690 00001", "918069000002", "--org", "cli-numbers")
        assert [(n["number"], n["org_id"]) for n in added["numbers"]] == [  # type: ignore[attr-defined]
            ("918069000001", org["id"]),
            ("918069000002", org["id"]),
        ]
        shared = cli.ok("numbers", "add", "918069000003")
        assert shared["numbers"][0]["org_id"] is None  # type: ignore[index]
        mine = cli.ok("numbers", "list", "--org", "cli-numbers")["numbers"]
        assert [n["number"] for n in mine] == ["918069000001", "918069000002"]  # type: ignore[attr-defined]
        every = [n["number"] for n in cli.ok("numbers", "list")["numbers"]]  # type: ignore[attr-defined]
        assert {"918069000001", "918069000002", "918069000003"} <= set(every)
        removed = cli.ok("numbers", "remove", "918069000001")
        assert [n["number"] for n in removed["numbers"]] == ["918069000001"]  # type: ignore[attr-defined]
        mine = cli.ok("numbers", "list", "--org", "cli-numbers")["numbers"]
        assert [n["number"] for n in mine] == ["918069000002"]  # type: ignore[attr-defined]

    @pytest.mark.parametrize(
        ("number", "message"),
        [
            (
                "9876543210",
                "'9876543210' is not a masked number: write 12 digits with country code 91.",
            ),
            (
                "92806900000X",
                "'92806900000X' is not a masked number: write 12 digits with country code 91.",
            ),
            (
                "910069000000",
                "'910069000000' is not a masked number: write 12 digits with country code 91.",
            ),
        ],
    )
    def test_invalid_numbers_are_refused(self, cli: Cli, number: str, message: str) -> None:
        result = cli("numbers", "add", number)
        assert (result.code, result.stderr) == (1, f"error: {message}\n")

    def test_a_number_already_in_the_pool_is_refused_and_nothing_is_added(self, cli: Cli) -> None:
        cli.ok("numbers", "add", "918069000011")
        result = cli("numbers", "add", "918069000012", "918069000011")
        assert (result.code, result.stderr) == (1, "error: Already in the pool: 918069000011.\n")
        every = [n["number"] for n in cli.ok("numbers", "list")["numbers"]]  # type: ignore[attr-defined]
        assert "918069000012" not in every

    def test_removing_an_unknown_number_fails(self, cli: Cli) -> None:
        result = cli("numbers", "remove", "918069009999")
        assert (result.code, result.stderr) == (1, "error: 918069009999 is not in the pool.\n")


class TestWebhookCommands:
    def test_set_keeps_the_secret_and_show_prints_its_prefix(self, cli: Cli) -> None:
        org = cli.ok("org", "create", "cli-hook")
        secret = str(org["webhook_secret"])
        assert cli.ok("webhook", "show", "--org", "cli-hook") == {
            "url": None,
            "secret_prefix": secret[:10],
            "enabled": True,
        }
        # A global address is accepted (nothing is sent to it: no event is raised here).
        assert cli.ok("webhook", "set", "--org", "cli-hook", "--url", "https://8.8.8.8/h") == {
            "url": "https://8.8.8.8/h",
            "secret": None,
        }
        assert cli.ok("webhook", "show", "--org", "cli-hook") == {
            "url": "https://8.8.8.8/h",
            "secret_prefix": secret[:10],
            "enabled": True,
        }

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("http://8.8.8.8/h", "webhook_url must be an https URL."),
            (
                "https://user:pw@8.8.8.8/h",
                "webhook_url must not contain a user name or password.",
            ),
            ("ftp://8.8.8.8", "webhook_url must be an https URL."),
            (
                "https://127.0.0.1/h",
                "webhook_url must not point to a private or reserved address (127.0.0.1).",
            ),
            ("https://", "webhook_url must name a host."),
        ],
    )
    def test_bad_urls_are_refused(self, cli: Cli, url: str, message: str) -> None:
        name = f"cli-hook-bad-{uuid.uuid4().hex[:12]}"
        cli.ok("org", "create", name)
        result = cli("webhook", "set", "--org", name, "--url", url)
        assert (result.code, result.stderr) == (1, f"error: {message}\n")


class TestMigrate:
    def test_migrate_prints_the_newest_revision(self, cli: Cli) -> None:
        newest = sorted(p.name for p in (script_location() / "versions").glob("0*.py"))[-1]
        assert cli.ok("migrate") == {"revision": newest.split("_")[0]}
        assert head_revision() == newest.split("_")[0]

    def test_human_output_without_json(self, cli: Cli) -> None:
        result = cli("migrate")
        assert (result.code, result.stdout) == (0, f"revision: {head_revision()}\n")
