"""SPEC §9: webhook test, deliveries, replay and rotate-secret from the CLI."""

from __future__ import annotations

from standardwebhooks import Webhook

from tests.conftest import Cli
from tests.support.receiver import Receiver


def private(cli: Cli) -> Cli:
    return Cli({**cli.env, "MASKLINE_ALLOW_PRIVATE_WEBHOOKS": "true"}, cli.cwd)


class TestWebhookCommands:
    def test_webhook_test_sends_a_signed_event_the_package_verifies(
        self, cli: Cli, receiver: Receiver
    ) -> None:
        local = private(cli)
        org = local.ok("org", "create", "cli-hook-test")
        local.ok("webhook", "set", "--org", "cli-hook-test", "--url", receiver.url)
        delivery = local.ok("webhook", "test", "--org", "cli-hook-test")
        assert (delivery["event"], delivery["status"], delivery["attempts"]) == (
            "webhook.test",
            "succeeded",
            1,
        )
        assert delivery["last_status_code"] == 200
        (request,) = receiver.requests
        payload = Webhook(str(org["webhook_secret"])).verify(request.body, request.headers)
        assert payload["event"] == "webhook.test"
        assert payload["id"] == delivery["event_id"] == request.headers["webhook-id"]

        listed = local.ok("webhook", "deliveries", "--org", "cli-hook-test")["deliveries"]
        assert [d["id"] for d in listed] == [delivery["id"]]  # type: ignore[index]
        replayed = local.ok("webhook", "replay", str(delivery["id"]))
        assert (replayed["id"], replayed["status"]) == (delivery["id"], "pending")

    def test_rotation_signs_with_both_secrets_for_a_day(self, cli: Cli, receiver: Receiver) -> None:
        local = private(cli)
        org = local.ok("org", "create", "cli-hook-rotate")
        local.ok("webhook", "set", "--org", "cli-hook-rotate", "--url", receiver.url)
        rotated = local.ok("webhook", "rotate-secret", "--org", "cli-hook-rotate")
        assert rotated["url"] == receiver.url
        assert str(rotated["secret"]).startswith("whsec_")
        assert rotated["secret"] != org["webhook_secret"]
        local.ok("webhook", "test", "--org", "cli-hook-rotate")
        (request,) = receiver.requests
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        Webhook(str(rotated["secret"])).verify(request.body, request.headers)
        Webhook(str(org["webhook_secret"])).verify(request.body, request.headers)
        shown = local.ok("webhook", "show", "--org", "cli-hook-rotate")
        assert shown["secret_prefix"] == str(rotated["secret"])[:10]

    def test_webhook_test_without_a_url_fails(self, cli: Cli) -> None:
        cli.ok("org", "create", "cli-hook-none")
        result = cli("webhook", "test", "--org", "cli-hook-none")
        assert (result.code, result.stderr) == (
            1,
            "error: This organisation has no webhook URL: run 'webhook set'.\n",
        )

    def test_replaying_an_unknown_delivery_fails(self, cli: Cli) -> None:
        result = cli("webhook", "replay", "dlv_nope")
        assert (result.code, result.stderr) == (1, "error: No webhook delivery with this id.\n")
