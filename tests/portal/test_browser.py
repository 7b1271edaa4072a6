"""SPEC §12 in a real browser: Debian's chromium driven by Playwright against a real
``maskline serve`` (on the database under test), with a real local SMTP server whose
mails the tests follow."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright
from pypdf import PdfReader

from tests.conftest import TEST_SECRET_KEY
from tests.portal.axe import axe_script
from tests.support.cli import run_cli
from tests.support.databases import fresh_database
from tests.support.mailbox import Mailbox, mailbox
from tests.support.razorpay import StandIn, razorpay_standin
from tests.support.server import Server, free_port, running_server
from tests.support.waits import eventually_blocking

pytestmark = [pytest.mark.browser, pytest.mark.subprocess, pytest.mark.database]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"
WRONG_CREDENTIALS = "The email or password is not right."


@dataclass
class Portal:
    server: Server
    mail: Mailbox
    razorpay: StandIn
    env: dict[str, str]
    cwd: Path

    @property
    def url(self) -> str:
        return self.server.base_url

    def cli(self, *args: str) -> dict[str, Any]:
        result = run_cli(*args, "--json", env=self.env, cwd=self.cwd)
        assert result.code == 0, result.stderr
        payload: dict[str, Any] = result.json
        return payload


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    directory = tmp_path_factory.mktemp("portal")
    port = free_port()
    with mailbox() as mail, razorpay_standin() as razorpay, fresh_database(directory) as url:
        env = {
            "MASKLINE_DATABASE_URL": url,
            "MASKLINE_SECRET_KEY": TEST_SECRET_KEY,
            "MASKLINE_DATA_DIR": str(directory / "data"),
            "MASKLINE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "MASKLINE_SMTP_URL": mail.url,
            "MASKLINE_SIGNUP": "open",
            "MASKLINE_SIM_RING_SEC": "1",
            "MASKLINE_SIM_TALK_SEC": "4",
            **razorpay.env(),
        }
        with running_server(env, directory, port=port) as server:
            running = Portal(server=server, mail=mail, razorpay=razorpay, env=env, cwd=directory)
            # A shared pool, so the sandbox twins opened by sign-up can place calls.
            running.cli("numbers", "add", "917969002901", "917969002902")
            yield running


@pytest.fixture(scope="module")
def browser(portal: Portal) -> Iterator[Browser]:
    # After the server's fixture (asked for here): Playwright's synchronous API keeps an
    # event loop running in this thread, where the database set-up's asyncio.run cannot.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Problems:
    """Console errors and failed requests seen on the pages a test visits."""

    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console.append(message.text)

    def on_failed(self, request: Request) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def on_response(self, response: Response) -> None:
        if response.status >= 400 and response.status not in self.expected_statuses:
            self.failed.append(f"{response.request.method} {response.url}: {response.status}")

    def unexpected_console(self) -> list[str]:
        allowed = [f"status of {status}" for status in self.expected_statuses]
        return [m for m in self.console if not any(a in m for a in allowed)]


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def page(browser: Browser, problems: Problems) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    opened.on("console", problems.on_console)
    opened.on("requestfailed", problems.on_failed)
    opened.on("response", problems.on_response)
    yield opened
    context.close()
    assert problems.unexpected_console() == []
    assert problems.failed == []


def sign_up(page: Page, portal: Portal, email: str, company: str) -> str:
    """Sign up, follow the verification mail; the sandbox twin's id (in Test mode)."""
    page.goto(f"{portal.url}/sign-up")
    page.get_by_label("Your name").fill("Asha Rao")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Company name").fill(company)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("heading", name="Check your mail").wait_for()
    link = portal.mail.link_to(email, "Verify your email")
    assert link.startswith(f"{portal.url}/verify?token=")
    page.goto(link)
    page.get_by_role("button", name="Verify and sign in").click()
    page.get_by_role("heading", name="Overview").wait_for()
    assert page.locator("#balance").inner_text() == "Rs 0.00"
    page.locator("#test-mode").click()
    page.get_by_role("heading", name="Overview").wait_for()
    assert page.locator("#balance").inner_text() == "Rs 500.00"
    match = re.search(r"/o/(org_[A-Za-z0-9]+)$", page.url)
    assert match is not None, page.url
    return match.group(1)


def sign_in_by_link(page: Page, link: str) -> None:
    page.goto(link)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview").wait_for()


def create_key(page: Page, portal: Portal, org_id: str, name: str) -> str:
    page.goto(f"{portal.url}/o/{org_id}/keys")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").input_value()
    assert re.fullmatch(r"vp_test_[A-Za-z0-9]{38}", key), key
    return key


class TestSignUpToCall:
    def test_sign_up_verify_create_a_key_and_watch_its_call_complete_live(
        self, page: Page, portal: Portal
    ) -> None:
        test_org = sign_up(page, portal, "asha@example.com", "Asha Logistics")
        key = create_key(page, portal, test_org, "backend")
        row = page.locator("#keys tbody tr")
        assert row.count() == 2  # the twin's first key, and this one
        assert row.first.locator("td").first.inner_text() == "backend"
        assert row.first.locator("code").inner_text() == key[:12] + "…"
        # The key is shown once: the page again shows only its prefix.
        page.goto(f"{portal.url}/o/{test_org}/keys")
        assert page.locator("#new-key").count() == 0

        page.goto(f"{portal.url}/o/{test_org}/calls")
        page.evaluate("window.notReloaded = true")
        created = httpx.post(
            f"{portal.url}/v1/masking/calls",
            headers={"Authorization": f"Bearer {key}"},
            json={"party_a": "9876543210", "party_b": "9123456789"},
        )
        assert created.status_code == 201, created.text
        sid = created.json()["data"]["call_sid"]
        page.reload()
        page.evaluate("window.notReloaded = true")
        call_row = page.locator(f'tr[data-call="{sid}"]')
        assert call_row.get_attribute("data-status") in ("initiated", "ringing", "in-progress")
        # Updated in place by the page's polling, within a deadline (not a sleep).
        call_row.and_(page.locator('[data-status="completed"]')).wait_for(timeout=30_000)
        assert page.evaluate("window.notReloaded") is True
        assert call_row.locator(".status").inner_text() == "completed"

        call_row.get_by_role("link").click()
        page.get_by_role("heading", name=f"Call {sid}").wait_for()
        assert page.locator('[data-field="status"]').inner_text() == "completed"
        assert page.locator('[data-field="party_a"]').inner_text() == "9876543210"
        events = page.locator("#timeline li").evaluate_all(
            "items => items.map(item => item.dataset.event)"
        )
        assert events[0] == "call.initiated"
        assert events.index("call.answered") < events.index("call.completed")


class TestRolesAndScoping:
    def test_a_billing_user_is_refused_the_keys_page_by_the_server(
        self, page: Page, portal: Portal, problems: Problems
    ) -> None:
        made = portal.cli(
            "user",
            "create",
            "--org",
            "sandbox",
            "--email",
            "Billing@Example.com",
            "--role",
            "billing",
        )
        assert made["email"] == "Billing@Example.com"
        assert made["role"] == "billing"
        sign_in_by_link(page, made["sign_in_link"])
        assert page.get_by_role("link", name="API keys").count() == 0
        org_id = page.url.rsplit("/", 1)[1]
        problems.expected_statuses.add(403)
        response = page.goto(f"{portal.url}/o/{org_id}/keys")
        assert response is not None
        assert response.status == 403
        assert page.get_by_role("heading").inner_text() == "Not allowed"
        listed = portal.cli("user", "list", "--org", "sandbox")["users"]
        assert {u["email"]: u["role"] for u in listed}["Billing@Example.com"] == "billing"

    def test_a_user_of_another_organisation_cannot_reach_its_pages_or_objects(
        self, page: Page, browser: Browser, portal: Portal, problems: Problems
    ) -> None:
        owner_org = sign_up(page, portal, "owner@example.net", "Owner Traders")
        create_key(page, portal, owner_org, "owner key")
        key_id = page.locator("#keys tbody tr").first.get_attribute("data-key")
        owner_key = page.locator("#new-key").input_value()
        created = httpx.post(
            f"{portal.url}/v1/masking/calls",
            headers={"Authorization": f"Bearer {owner_key}"},
            json={"party_a": "9876543210", "party_b": "9123456789"},
        )
        sid = created.json()["data"]["call_sid"]

        intruder_context = browser.new_context()
        intruder = intruder_context.new_page()
        intruder.on("console", problems.on_console)
        problems.expected_statuses.add(404)
        try:
            sign_up(intruder, portal, "intruder@example.org", "Intruder Inc")
            for path in (
                f"/o/{owner_org}",
                f"/o/{owner_org}/keys",
                f"/o/{owner_org}/calls",
                f"/o/{owner_org}/calls/{sid}",
                f"/o/{owner_org}/calls/rows",
                f"/o/{owner_org}/keys/{key_id}/revoke",
            ):
                response = intruder.goto(f"{portal.url}{path}")
                assert response is not None
                assert response.status == 404, path
                assert intruder.get_by_role("heading").inner_text() == "Not found"
            # The intruder's own organisation does not open the owner's objects either.
            own = intruder.url.rsplit("/", 1)[1]
            for path in (f"/o/{own}/calls/{sid}", f"/o/{own}/keys/{key_id}/revoke"):
                response = intruder.goto(f"{portal.url}{path}")
                assert response is not None
                assert response.status == 404, path
        finally:
            intruder_context.close()


class TestSessions:
    def test_the_session_cookie_is_http_only_and_same_site_lax_and_sign_out_ends_it(
        self, page: Page, portal: Portal
    ) -> None:
        sign_up(page, portal, "cookie@example.com", "Cookie Co")
        cookies = {c["name"]: c for c in page.context.cookies()}
        session = cookies["maskline_session"]
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Lax"
        assert page.evaluate("document.cookie") == ""
        stolen = {"maskline_session": session["value"]}
        home = httpx.get(f"{portal.url}/", cookies=stolen)
        assert home.status_code == 303
        assert home.headers["location"].startswith("/o/org_")

        page.get_by_role("button", name=re.compile("^Sign out")).click()
        page.get_by_role("heading", name="Sign in").wait_for()
        after = httpx.get(f"{portal.url}/", cookies=stolen)
        assert after.status_code == 303
        assert after.headers["location"] == "/sign-in"

    def test_a_form_posted_without_its_csrf_token_is_refused(
        self, page: Page, portal: Portal, problems: Problems
    ) -> None:
        org = sign_up(page, portal, "csrf@example.com", "Csrf Co")
        page.goto(f"{portal.url}/o/{org}/keys")
        page.evaluate("document.querySelector('form.card input[name=csrf]').remove()")
        page.get_by_label("Name").fill("forged")
        problems.expected_statuses.add(403)
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.get_by_role("button", name="Create key").click()
        assert posted.value.status == 403
        assert page.get_by_role("heading").inner_text() == "Form expired"
        page.goto(f"{portal.url}/o/{org}/keys")
        names = page.locator("#keys tbody tr td:first-child").all_inner_texts()
        assert "forged" not in names

    def test_security_headers_on_portal_pages(self, portal: Portal) -> None:
        response = httpx.get(f"{portal.url}/sign-in")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def _sign_in_form(client: httpx.Client, base: str) -> str:
    page = client.get(f"{base}/sign-in")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


class TestSignInLimits:
    def test_wrong_passwords_are_limited_and_never_tell_whether_the_email_exists(
        self, page: Page, portal: Portal
    ) -> None:
        sign_up(page, portal, "limits@example.com", "Limits Co")
        answers: dict[str, list[tuple[int, bool]]] = {}
        for email in ("limits@example.com", "nobody@example.com"):
            # Each from an address of its own budget: the account budget is what is tested.
            with httpx.Client() as client:
                csrf = _sign_in_form(client, portal.url)
                seen = []
                for _ in range(11):
                    response = client.post(
                        f"{portal.url}/sign-in",
                        data={"csrf": csrf, "email": email, "password": "wrong password!"},
                    )
                    seen.append((response.status_code, WRONG_CREDENTIALS in response.text))
                answers[email] = seen
        assert answers["limits@example.com"] == [(400, True)] * 10 + [(429, False)]
        assert answers["nobody@example.com"] == answers["limits@example.com"]
        # The right password is refused too while the account's budget is spent.
        with httpx.Client() as client:
            csrf = _sign_in_form(client, portal.url)
            response = client.post(
                f"{portal.url}/sign-in",
                data={"csrf": csrf, "email": "limits@example.com", "password": PASSWORD},
            )
        assert response.status_code == 429
        assert "Too many sign-in attempts" in response.text


class TestPasswordReset:
    def test_a_reset_by_mailed_link_ends_every_other_session(
        self, page: Page, browser: Browser, portal: Portal
    ) -> None:
        sign_up(page, portal, "reset@example.com", "Reset Co")
        other = browser.new_context()
        try:
            second = other.new_page()
            second.goto(f"{portal.url}/reset")
            second.get_by_label("Email").fill("reset@example.com")
            second.get_by_role("button", name="Send me a link").click()
            second.get_by_role("heading", name="Check your mail").wait_for()
            link = portal.mail.link_to("reset@example.com", "Reset your maskline password")
            second.goto(link)
            second.get_by_label("New password").fill("a brand new password")
            second.get_by_role("button", name="Set password and sign in").click()
            second.get_by_role("heading", name="Overview").wait_for()
        finally:
            other.close()
        page.reload()
        page.get_by_role("heading", name="Sign in").wait_for()
        page.get_by_label("Email").fill("reset@example.com")
        page.get_by_label("Password").fill("a brand new password")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Overview").wait_for()

    def test_a_reset_for_an_unknown_email_answers_the_same_and_sends_nothing(
        self, page: Page, portal: Portal
    ) -> None:
        page.goto(f"{portal.url}/reset")
        page.get_by_label("Email").fill("ghost@example.com")
        page.get_by_role("button", name="Send me a link").click()
        text = page.locator("main").inner_text()
        assert "If ghost@example.com has an account" in text
        assert portal.mail.to("ghost@example.com") == []


def test_the_sandbox_first_start_printed_a_working_sign_in_link(page: Page, portal: Portal) -> None:
    output = portal.server.output_when(lambda out: "/sign-in/link?token=" in out)
    match = re.search(r"(http://\S+/sign-in/link\?token=\S+)", output)
    assert match is not None
    sign_in_by_link(page, match.group(1))
    assert page.locator("#balance").inner_text() == "Rs 500.00"
    eventually_blocking(lambda: page.locator("span.mode.on").count() == 1, what="Test mode")


class TestWallet:
    def test_a_top_up_through_checkout_credits_once_with_its_invoice_pdf(
        self, page: Page, portal: Portal
    ) -> None:
        org = sign_up(page, portal, "payer@example.com", "Payer Co")
        page.goto(f"{portal.url}/o/{org}/wallet")
        page.get_by_label("GSTIN (optional, for input tax credit)").fill("27AAPFU0939F1ZV")
        page.get_by_role("button", name="Save billing profile").click()
        page.get_by_text("Billing profile saved.").wait_for()
        page.get_by_label("Amount in rupees").fill("100")
        page.get_by_role("button", name="Continue to payment").click()
        page.get_by_role("button", name="Pay Rs 118.00 with Razorpay").click()
        page.get_by_role("button", name="Pay", exact=True).click()
        page.locator("#credited").wait_for()
        assert page.locator("#topup-status").inner_text() == "paid"
        page.goto(f"{portal.url}/o/{org}/wallet")
        assert page.locator("#balance").inner_text() == "Rs 600.00"
        row = page.locator("#invoices tbody tr").first
        assert row.locator(".igst").inner_text() == "Rs 18.00"
        assert row.locator(".cgst").inner_text() == "Rs 0.00"
        with page.expect_download() as download:
            row.get_by_role("link").click()
        text = PdfReader(download.value.path()).pages[0].extract_text()
        assert "GSTIN: 27AAPFU0939F1ZV" in text
        assert "IGST 18% Rs 18.00" in text
        assert "Total Rs 118.00" in text
        # The same payment's webhook afterwards credits nothing more.
        [payment] = list(portal.razorpay.payments.values())
        late = portal.razorpay.deliver(portal.url, portal.razorpay.event("order.paid", payment))
        assert late.json() == {"data": {"outcome": "already_credited"}}
        page.reload()
        assert page.locator("#balance").inner_text() == "Rs 600.00"


# Where the suite writes the screenshots of docs/portal.md when asked (run once by
# hand: MASKLINE_PORTAL_SCREENSHOTS=docs/portal); unset, nothing is written.
SHOTS_ENV = "MASKLINE_PORTAL_SCREENSHOTS"
SHOT_WIDTH = 1000
NARROW = 360


def axe_violations(page: Page) -> list[str]:
    """The serious and critical violations axe-core finds on the page."""
    # Through the DevTools protocol, which the page's CSP (no inline script) does not
    # govern: the page is checked with its real policy on, not bypassed.
    page.evaluate(axe_script().read_text(encoding="utf-8"))
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations
                .filter(v => v.impact === "serious" || v.impact === "critical")
                .map(v => `${v.id}: ${v.nodes.map(n => n.target.join(" ")).join(", ")}`);
        }"""
    )
    return list(found)


def check_page(page: Page, name: str) -> None:
    """The page at 1000 px (its screenshot, when asked) and at 360 px: no horizontal
    scroll, and no serious or critical accessibility violation."""
    page.set_viewport_size({"width": SHOT_WIDTH, "height": 720})
    shots = os.environ.get(SHOTS_ENV)
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / f"{name}.jpg"), full_page=True, quality=70)
    page.set_viewport_size({"width": NARROW, "height": 720})
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        """limit => [...document.querySelectorAll("body *")]
            .filter(e => e.getBoundingClientRect().right > limit)
            .map(e => `${e.tagName}#${e.id}.${e.className}:${e.getBoundingClientRect().right}`)
            .filter(t => !t.startsWith("A#.:") && !t.startsWith("TD") && !t.startsWith("TH"))
            .slice(0, 8)""",
        NARROW,
    )
    assert width <= NARROW, f"{name} is {width} px wide at {NARROW} px: {wide}"
    assert axe_violations(page) == [], name


def focus(page: Page, selector: str, *, most: int = 40) -> None:
    """Tab (the keyboard only) until ``selector`` has the focus."""
    for _ in range(most):
        if page.evaluate(f"document.activeElement?.matches({selector!r}) ?? false"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never took the focus")


class TestEveryPage:
    def test_keyboard_only_key_then_a_recorded_call_played_and_deleted_and_every_page_checked(
        self, browser: Browser, portal: Portal, problems: Problems
    ) -> None:
        context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.on("console", problems.on_console)
        page.on("requestfailed", problems.on_failed)
        page.on("response", problems.on_response)
        try:
            self._flow(page, portal)
        finally:
            context.close()
        assert problems.unexpected_console() == []
        assert problems.failed == []

    def _flow(self, page: Page, portal: Portal) -> None:
        for name, path in (("sign-in", "/sign-in"), ("sign-up", "/sign-up"), ("reset", "/reset")):
            page.goto(f"{portal.url}{path}")
            check_page(page, name)
        org = sign_up(page, portal, "keys@example.com", "Keyboard Co")
        page.get_by_role("button", name=re.compile("^Sign out")).click()
        # Signed out once the redirect's sign-in page has loaded: navigating before that
        # would abort it (a failed request to the suite).
        page.get_by_role("heading", name="Sign in").wait_for()

        # Keyboard only: sign in, create a key, copy it.
        page.goto(f"{portal.url}/sign-in")
        focus(page, "input[name=email]")
        page.keyboard.type("keys@example.com")
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Overview").wait_for()
        page.goto(f"{portal.url}/o/{org}/keys")
        focus(page, "#key-name")
        page.keyboard.type("typed")
        page.keyboard.press("Enter")
        page.locator("#new-key").wait_for()
        key = page.locator("#new-key").input_value()
        focus(page, "button[data-copy]")
        page.keyboard.press("Enter")
        page.get_by_role("button", name="Copied").wait_for()
        assert page.evaluate("navigator.clipboard.readText()") == key
        check_page(page, "keys")
        page.reload()  # no second key, and the key is not shown again
        assert page.locator("#new-key").count() == 0
        assert page.locator("#keys tbody tr td:first-child").all_inner_texts().count("typed") == 1

        # A recorded call: the player plays it, a seek reads by Range, then it is deleted.
        created = httpx.post(
            f"{portal.url}/v1/masking/calls",
            headers={"Authorization": f"Bearer {key}"},
            json={"party_a": "9876543210", "party_b": "9123456789"},
        )
        assert created.status_code == 201, created.text
        sid = created.json()["data"]["call_sid"]

        def recorded() -> bool:
            found = httpx.get(
                f"{portal.url}/v1/masking/calls/{sid}", headers={"Authorization": f"Bearer {key}"}
            ).json()["data"]
            return bool(found["recording_status"] == "ready")

        eventually_blocking(recorded, what="the recording", within=60)
        ranges: list[tuple[str | None, int]] = []
        page.on(
            "response",
            lambda r: (
                ranges.append((r.request.all_headers().get("range"), r.status))
                if f"/recordings/{sid}.mp3" in r.url
                else None
            ),
        )
        page.goto(f"{portal.url}/o/{org}/calls/{sid}")
        player = page.locator("#player")
        player.evaluate(
            "audio => new Promise(done => audio.readyState >= 3 ? done() :"
            " audio.addEventListener('canplay', done, {once: true}))"
        )
        duration = player.evaluate("audio => audio.duration")
        assert duration > 3
        player.evaluate(
            "(audio, to) => new Promise(done => {"
            " audio.addEventListener('seeked', done, {once: true}); audio.currentTime = to; })",
            duration - 1,
        )
        eventually_blocking(lambda: any(s == 206 for _r, s in ranges), what="a 206")
        assert all(r is not None and r.startswith("bytes=") for r, _s in ranges), ranges
        check_page(page, "call")
        page.set_viewport_size({"width": SHOT_WIDTH, "height": 720})
        page.locator("#recording-delete").click()
        page.get_by_role("button", name="Delete recording").click()
        page.get_by_role("heading", name=f"Call {sid}").wait_for()
        assert page.locator("#player").count() == 0
        assert page.locator('[data-field="recording_status"]').inner_text() == "none"

        for name, path in (
            ("overview", ""),
            ("calls", "/calls"),
            ("webhooks", "/webhooks"),
            ("usage", "/usage"),
            ("numbers", "/numbers"),
            ("wallet", "/wallet"),
            ("members", "/members"),
            ("audit", "/audit"),
            ("account", "/account"),
        ):
            page.goto(f"{portal.url}/o/{org}{path}")
            check_page(page, name)


class TestMembersInBrowser:
    def test_an_invitee_gets_the_mail_signs_in_with_the_role_and_cannot_open_recordings(
        self, page: Page, browser: Browser, portal: Portal, problems: Problems
    ) -> None:
        org = sign_up(page, portal, "team@example.com", "Team Co")
        page.goto(f"{portal.url}/o/{org}/members")
        page.get_by_label("Email").fill("accounts@example.com")
        page.get_by_label("Role", exact=True).select_option("billing")
        page.get_by_role("button", name="Invite").click()
        page.get_by_text("Invitation sent").wait_for()
        link = portal.mail.link_to("accounts@example.com", "You are invited to")
        other = browser.new_context()
        try:
            invitee = other.new_page()
            invitee.on("console", problems.on_console)
            sign_in_by_link(invitee, link)
            assert invitee.url.endswith(f"/o/{org}")
            labels = invitee.locator("nav.tabs a").all_inner_texts()
            assert labels == ["Overview", "Usage", "Wallet", "Account"]
            problems.expected_statuses.add(403)
            for path in ("/keys", "/calls", "/webhooks"):
                response = invitee.goto(f"{portal.url}/o/{org}{path}")
                assert response is not None
                assert response.status == 403, path
        finally:
            other.close()
        page.reload()
        row = page.locator('tr[data-member="accounts@example.com"]')
        assert row.get_attribute("data-role") == "billing"
