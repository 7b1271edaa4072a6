"""SPEC §12 over HTTP: the Webhooks page (§6's URL checks, the secret revealed on a POST
only and rotated, a test event received by a real local endpoint, the delivery log and
replay), the Usage page and its CSV, the Numbers page, the Overview's 7-day chart, and
the recording player on a call's page (Range, delete; never for a billing user)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from maskline.kit.clock import ScaledClock
from maskline.kit.india import ist_date
from tests.calls.conftest import SPEED, call_settings
from tests.conftest import make_settings
from tests.support.api import Api, running_api
from tests.support.calls import place, wait_for
from tests.support.portal import PortalUser, csrf_of, signed_in
from tests.support.receiver import Receiver, until
from tests.support.waits import eventually_value

pytestmark = pytest.mark.database


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = call_settings(database_url, tmp_path / "data")
    async with running_api(settings, clock=ScaledClock(SPEED)) as running:
        yield running


def secret_on(html: str) -> str | None:
    match = re.search(r'id="webhook-secret" readonly value="(whsec_[^"]+)"', html)
    return match.group(1) if match else None


async def reveal(user: PortalUser) -> str:
    hooks = f"/o/{user.org_id}/webhooks"
    shown = await user.post_form(hooks, f"{hooks}/secret", {})
    assert shown.status_code == 200
    secret = secret_on(shown.text)
    assert secret is not None
    return secret


class TestWebhooksPage:
    async def test_url_secret_test_event_rotation_and_replay(
        self, api: Api, receiver: Receiver
    ) -> None:
        org = await api.make_org("hooks-page")
        owner = await signed_in(api, org.id, "boss@hooks-page.example")
        hooks = f"/o/{org.id}/webhooks"
        page = await owner.client.get(hooks)
        # The secret is not in the page until asked for by a POST (with its CSRF token).
        assert org.webhook_secret not in page.text
        assert f'id="secret-prefix">{org.webhook_secret[:10]}…' in page.text
        assert await reveal(owner) == org.webhook_secret
        forged = await owner.client.post(f"{hooks}/secret", data={"csrf": "nope"})
        assert forged.status_code == 403
        assert org.webhook_secret not in forged.text

        no_url = await owner.post_form(hooks, f"{hooks}/test", {})
        assert no_url.status_code == 400
        assert "Set a webhook URL first" in no_url.text
        saved = await owner.post_form(hooks, f"{hooks}/url", {"url": receiver.url})
        assert saved.status_code == 303
        sent = await owner.post_form(hooks, f"{hooks}/test", {})
        assert sent.headers["location"] == f"{hooks}?done=test"
        [got] = await until(receiver, lambda r: len(r) == 1)
        assert got.json["event"] == "webhook.test"
        expected = hmac.new(org.webhook_secret.encode(), got.body, hashlib.sha256).hexdigest()
        assert got.headers["x-edesy-signature"] == expected

        # The worker records the outcome after the receiver has answered (in batches):
        # the page shows it once that is written.
        log = await eventually_value(
            lambda: owner.client.get(f"{hooks}?status=succeeded&event=webhook.test"),
            lambda page: 'data-status="succeeded"' in page.text,
            what="the delivery recorded as succeeded",
        )
        [delivery] = re.findall(r'data-delivery="(\w+)" data-status="succeeded"', log.text)
        assert 'data-status="pending"' not in log.text
        empty = await owner.client.get(f"{hooks}?status=failed")
        assert "No deliveries." in empty.text

        replayed = await owner.post_form(
            hooks, f"{hooks}/deliveries/{delivery}/replay", {"back": "//evil.example/"}
        )
        assert replayed.headers["location"] == hooks
        first, again = await until(receiver, lambda r: len(r) == 2)
        assert again.headers["webhook-id"] == first.headers["webhook-id"]
        assert again.body == first.body

        rotated = await owner.post_form(hooks, f"{hooks}/secret/rotate", {})
        assert rotated.status_code == 303
        shown = await owner.client.get(hooks)
        new_secret = secret_on(shown.text)
        assert new_secret is not None
        assert new_secret != org.webhook_secret
        assert "The previous secret also signs until" in shown.text
        assert secret_on((await owner.client.get(hooks)).text) is None  # shown once
        assert await reveal(owner) == new_secret
        audit = await owner.client.get(f"/o/{org.id}/audit")
        assert f"New secret {new_secret[:10]}…" in audit.text
        assert 'data-action="webhook.secret_rotated"' in audit.text

    async def test_a_url_refused_by_the_checks_of_spec_6_is_a_clear_400(
        self, database_url: str, tmp_path: Path
    ) -> None:
        settings = make_settings(database_url, tmp_path / "data")  # no private webhooks
        async with running_api(settings) as strict:
            org = await strict.make_org("hooks-refused")
            owner = await signed_in(strict, org.id, "boss@hooks-refused.example")
            hooks = f"/o/{org.id}/webhooks"
            for url, message in (
                ("http://example.com/hook", "webhook_url must be an https URL."),
                (
                    "https://user:pw@example.com/hook",
                    "webhook_url must not contain a user name or password.",
                ),
                (
                    "https://127.0.0.1/hook",
                    "webhook_url must not point to a private or reserved address (127.0.0.1).",
                ),
            ):
                refused = await owner.post_form(hooks, f"{hooks}/url", {"url": url})
                assert refused.status_code == 400, url
                assert message in refused.text
                assert f'value="{url}"' in refused.text

    async def test_a_billing_user_cannot_open_webhooks_and_strangers_get_404(
        self, api: Api
    ) -> None:
        org = await api.make_org("hooks-roles")
        other = await api.make_org("hooks-other")
        billing = await signed_in(api, org.id, "money@hooks-roles.example", role="billing")
        assert (await billing.client.get(f"/o/{org.id}/webhooks")).status_code == 403
        stranger = await signed_in(api, other.id, "x@hooks-other.example")
        assert (await stranger.client.get(f"/o/{org.id}/webhooks")).status_code == 404
        page = await stranger.client.get(f"/o/{other.id}/webhooks")
        posted = await stranger.client.post(
            f"/o/{org.id}/webhooks/secret", data={"csrf": csrf_of(page.text)}
        )
        assert posted.status_code == 404


class TestUsageNumbersOverview:
    async def test_usage_figures_chart_and_csv_of_a_completed_call(self, api: Api) -> None:
        org = await api.make_org("usage-page", balance="100", numbers=1)
        owner = await signed_in(api, org.id, "boss@usage-page.example")
        placed = await place(api, org)
        call = await wait_for(api, org, placed["call_sid"])
        assert call["status"] == "completed"
        # The call counts on its own day (India's); the page ends on the clock's, which
        # runs SPEED times fast and may have passed midnight since (near midnight IST).
        day = ist_date(datetime.fromisoformat(call["created_at"])).isoformat()
        today = ist_date(api.runtime.clock.now()).isoformat()

        usage = await owner.client.get(f"/o/{org.id}/usage")
        assert usage.status_code == 200
        assert '<dd data-figure="total_calls">1</dd>' in usage.text
        assert '<dd data-figure="completed">1</dd>' in usage.text
        assert len(re.findall(r'<tr data-day="', usage.text)) == 30
        assert f'<tr data-day="{day}"><td>{day}</td><td>1</td><td>1</td>' in usage.text
        bars = re.findall(r'<rect class="bar"[^>]*data-title="([^"]+)"', usage.text)
        assert len(bars) == 30
        assert f"{day}: 1 calls" in bars
        assert bars[-1].startswith(f"{today}: ")

        csv_link = re.search(r'id="csv" href="([^"]+)"', usage.text)
        assert csv_link is not None
        exported = await owner.client.get(csv_link.group(1).replace("&amp;", "&"))
        assert exported.status_code == 200
        assert exported.headers["content-type"] == "text/csv; charset=utf-8"
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [(r["call_sid"], r["status"], r["party_a"]) for r in rows] == [
            (call["call_sid"], "completed", "9876543210")
        ]
        assert rows[0]["bill_duration_sec"] == str(call["bill_duration_sec"])

        one_day = await owner.client.get(f"/o/{org.id}/usage?start_date={day}&end_date={day}")
        assert len(re.findall(r'<tr data-day="', one_day.text)) == 1
        too_long = await owner.client.get(
            f"/o/{org.id}/usage?start_date=2024-01-01&end_date=2025-06-01"
        )
        assert too_long.status_code == 400
        assert "The range from start_date to end_date must be at most 366 days." in too_long.text
        bad = await owner.client.get(f"/o/{org.id}/usage/calls.csv?start_date=yesterday")
        assert bad.status_code == 400
        assert bad.text == "start_date must be an RFC 3339 date-time or a date (YYYY-MM-DD)."

        overview = await owner.client.get(f"/o/{org.id}")
        week = re.findall(r'<rect class="bar"[^>]*data-title="([^"]+)"', overview.text)
        assert len(week) == 7
        assert f"{day}: 1 calls" in week
        assert week[-1].startswith(f"{today}: ")
        day0 = ist_date(api.runtime.clock.now() - timedelta(days=6)).isoformat()
        assert week[0] == f"{day0}: 0 calls"

        numbers = await owner.client.get(f"/o/{org.id}/numbers")
        own = re.findall(
            r'<tr data-number="(\d+)"><td><code>\+\d+</code></td><td>yours', numbers.text
        )
        assert len(own) == 1
        billing = await signed_in(api, org.id, "money@usage-page.example", role="billing")
        assert (await billing.client.get(f"/o/{org.id}/usage")).status_code == 200
        assert (await billing.client.get(f"/o/{org.id}/numbers")).status_code == 403

    async def test_the_overview_warns_of_a_low_balance(self, api: Api) -> None:
        low = await api.make_org("overview-low", balance="5")
        fine = await api.make_org("overview-fine", balance="500")
        for org, warned in ((low, True), (fine, False)):
            owner = await signed_in(api, org.id, f"boss@{org.name}.example")
            page = await owner.client.get(f"/o/{org.id}")
            assert ('id="low-balance"' in page.text) is warned, org.name


class TestRecordingPlayer:
    async def test_the_call_page_plays_seeks_and_deletes_the_recording(self, api: Api) -> None:
        org = await api.make_org("player", balance="100", numbers=1)
        developer = await signed_in(api, org.id, "dev@player.example", role="developer")
        billing = await signed_in(api, org.id, "money@player.example", role="billing")
        placed = await place(api, org)
        call = await wait_for(api, org, placed["call_sid"])
        assert call["recording_status"] == "ready"
        sid = call["call_sid"]
        page = await developer.client.get(f"/o/{org.id}/calls/{sid}")
        match = re.search(
            r'<audio id="player" controls preload="metadata" src="([^"]+)"', page.text
        )
        assert match is not None
        src = match.group(1).replace("&amp;", "&")
        assert src.startswith(f"/v1/masking/recordings/{sid}.mp3?expires=")
        assert "media-src 'self'" in page.headers["content-security-policy"]
        whole = await developer.client.get(src)
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "audio/mpeg"
        part = await developer.client.get(src, headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206
        assert part.content == whole.content[1000:2000]

        # A billing user reaches neither the call nor its recording's actions.
        for path in (
            f"/o/{org.id}/calls/{sid}",
            f"/o/{org.id}/calls/{sid}/recording/delete",
        ):
            assert (await billing.client.get(path)).status_code == 403, path
        own = await billing.client.get(f"/o/{org.id}/usage")
        refused = await billing.client.post(
            f"/o/{org.id}/calls/{sid}/recording/delete", data={"csrf": csrf_of(own.text)}
        )
        assert refused.status_code == 403
        assert (await developer.client.get(src)).status_code == 200

        confirm = f"/o/{org.id}/calls/{sid}/recording/delete"
        deleted = await developer.post_form(confirm, confirm, {})
        assert deleted.status_code == 303
        assert deleted.headers["location"] == f"/o/{org.id}/calls/{sid}"
        after = await developer.client.get(f"/o/{org.id}/calls/{sid}")
        assert 'id="player"' not in after.text
        assert '<dd data-field="recording_status">none</dd>' in after.text
        assert (await developer.client.get(src)).status_code == 404
        api_view = await api.client.get(f"/v1/masking/calls/{sid}/recording", headers=org.auth)
        assert api_view.status_code == 404
        again = await developer.post_form(f"/o/{org.id}/calls/{sid}", confirm, {})
        assert again.status_code == 404
