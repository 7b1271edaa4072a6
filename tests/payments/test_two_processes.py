"""SPEC §13: a payment is credited exactly once even when Checkout's callback and
Razorpay's webhook arrive at the same moment in two API processes (PostgreSQL)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.support.cli import run_cli
from tests.support.databases import fresh_database
from tests.support.razorpay import razorpay_standin
from tests.support.server import free_port, running_server

pytestmark = [pytest.mark.subprocess, pytest.mark.postgres_only, pytest.mark.database]

ROUNDS = 3
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _csrf(text: str) -> str:
    match = CSRF.search(text)
    assert match is not None, text[:1000]
    return match.group(1)


def at_once(*requests: Callable[[], int]) -> list[int]:
    """Each request in a thread of its own, all let go at the same moment; their statuses."""
    start = threading.Barrier(len(requests))
    answers: list[int] = [0] * len(requests)

    def run(index: int, request: Callable[[], int]) -> None:
        start.wait()
        answers[index] = request()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_callback_and_webhook_at_once_in_two_processes_credit_once(tmp_path: Path) -> None:
    with razorpay_standin() as standin, fresh_database(tmp_path) as url:
        port_a, port_b = free_port(), free_port()
        env = {
            "MASKLINE_DATABASE_URL": url,
            "MASKLINE_SECRET_KEY": TEST_SECRET_KEY,
            "MASKLINE_DATA_DIR": str(tmp_path / "data"),
            "MASKLINE_PUBLIC_URL": f"http://127.0.0.1:{port_a}",
            **standin.env(),
        }
        made = run_cli("org", "create", "two-procs", "--json", env=env, cwd=tmp_path)
        assert made.code == 0, made.stderr
        key = made.json["api_key"]
        owner = run_cli(
            *("user", "create", "--org", "two-procs", "--email", "o@two.example"),
            *("--role", "owner", "--json"),
            env=env,
            cwd=tmp_path,
        )
        assert owner.code == 0, owner.stderr
        link = owner.json["sign_in_link"]
        with (
            running_server(env, tmp_path, extra_args=("--role", "api"), port=port_a) as a,
            running_server(env, tmp_path, extra_args=("--role", "api"), port=port_b) as b,
            httpx.Client(base_url=a.base_url) as browser,
        ):
            token = link.split("token=", 1)[1]
            opened = browser.get(f"/sign-in/link?token={token}")
            signed = browser.post(
                "/sign-in/link", data={"csrf": _csrf(opened.text), "token": token}
            )
            assert signed.status_code == 303
            org_id = made.json["id"]
            for _ in range(ROUNDS):
                wallet = browser.get(f"/o/{org_id}/wallet")
                created = browser.post(
                    f"/o/{org_id}/wallet/top-ups",
                    data={"csrf": _csrf(wallet.text), "amount": "100"},
                )
                assert created.status_code == 303, created.text[:500]
                topup_id = created.headers["location"].rsplit("/", 1)[1]
                order = next(o for o in standin.orders.values() if o["receipt"] == topup_id)
                payment = standin.pay(order["id"])
                answers = at_once(
                    lambda t=topup_id, p=payment: (
                        httpx.post(
                            f"{a.base_url}/o/{org_id}/wallet/top-ups/{t}/callback",
                            data=standin.callback_fields(p),
                            timeout=30,
                        ).status_code
                    ),
                    lambda p=payment: (
                        standin.deliver(
                            b.base_url, standin.event("payment.captured", p)
                        ).status_code
                    ),
                )
                assert answers == [303, 200]
            auth = {"Authorization": f"Bearer {key}"}
            billing = httpx.get(f"{b.base_url}/v1/masking/billing", headers=auth).json()["data"]
            assert billing["balance"] == 100 * ROUNDS
            listed = httpx.get(f"{a.base_url}/v1/masking/billing/invoices", headers=auth).json()
            assert len(listed["data"]) == ROUNDS
            assert len({i["reference"] for i in listed["data"]}) == ROUNDS
