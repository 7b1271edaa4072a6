"""A local stand-in for Razorpay: the Orders and Payments endpoints maskline calls, a
Checkout script and page that complete or fail a payment and post back to the
``callback_url`` as Razorpay's Checkout does with ``redirect: true``, and signed
webhooks. A real HTTP server in a thread (maskline talks to it over the network, with
the official client, exactly as it would to api.razorpay.com)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

KEY_ID = "rzp_test_standin"
KEY_SECRET = "standin-key-secret"
WEBHOOK_SECRET = "standin-webhook-secret"

CHECKOUT_JS = """
window.Razorpay = function (options) { this.options = options; };
window.Razorpay.prototype.open = function () {
  const url = new URL("/checkout/page", __STANDIN__);
  for (const name of ["key", "order_id", "amount", "currency", "callback_url", "name"]) {
    url.searchParams.set(name, this.options[name] ?? "");
  }
  window.location.assign(url.toString());
};
"""

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Razorpay stand-in</title></head><body><h1>Pay {amount} paise</h1><p>Order {order_id}</p>
<form method="post" action="/checkout/pay">
<input type="hidden" name="order_id" value="{order_id}">
<input type="hidden" name="callback_url" value="{callback_url}">
<button name="outcome" value="captured">Pay</button>
<button name="outcome" value="failed">Fail</button>
</form></body></html>"""

CALLBACK = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Redirecting</title></head><body><form method="post" action="{action}">{fields}</form>
<script>document.forms[0].submit();</script></body></html>"""


def error(description: str) -> dict[str, Any]:
    return {"error": {"code": "BAD_REQUEST_ERROR", "description": description}}


def sign(message: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass
class StandIn:
    port: int
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    # How Checkout leaves a successful payment: "captured" (auto-capture) or "authorized".
    checkout_status: str = "captured"
    # The amount Checkout charges instead of the order's (a tampered payment).
    charge_amount: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def checkout_url(self) -> str:
        return f"{self.url}/v1/checkout.js"

    def env(self) -> dict[str, str]:
        return {
            "MASKLINE_RAZORPAY_KEY_ID": KEY_ID,
            "MASKLINE_RAZORPAY_KEY_SECRET": KEY_SECRET,
            "MASKLINE_RAZORPAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "MASKLINE_RAZORPAY_API_URL": self.url,
            "MASKLINE_RAZORPAY_CHECKOUT_URL": self.checkout_url,
        }

    # The Orders and Payments APIs.
    def create_order(self, body: dict[str, Any]) -> dict[str, Any]:
        order = {
            "id": f"order_{secrets.token_hex(7)}",
            "entity": "order",
            "amount": int(body["amount"]),
            "amount_paid": 0,
            "amount_due": int(body["amount"]),
            "currency": body["currency"],
            "receipt": body.get("receipt"),
            "status": "created",
            "attempts": 0,
            "notes": [],
            "created_at": 1_780_000_000,
        }
        with self.lock:
            self.orders[order["id"]] = order
        return order

    def pay(
        self, order_id: str, *, status: str | None = None, amount: int | None = None
    ) -> dict[str, Any]:
        """A payment of the order, as Checkout makes one (status: captured, authorized, failed)."""
        order = self.orders[order_id]
        payment = {
            "id": f"pay_{secrets.token_hex(7)}",
            "entity": "payment",
            "amount": amount if amount is not None else (self.charge_amount or order["amount"]),
            "currency": order["currency"],
            "status": status or self.checkout_status,
            "order_id": order_id,
            "method": "upi",
            "captured": (status or self.checkout_status) == "captured",
            "amount_refunded": 0,
            "created_at": 1_780_000_100,
        }
        with self.lock:
            self.payments[payment["id"]] = payment
            if payment["status"] == "captured":
                order["status"] = "paid"
        return payment

    def capture(self, payment_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        payment = self.payments[payment_id]
        if payment["status"] != "authorized" or int(body["amount"]) != payment["amount"]:
            return 400, error("cannot capture")
        with self.lock:
            payment["status"] = "captured"
            payment["captured"] = True
            self.orders[payment["order_id"]]["status"] = "paid"
        return 200, payment

    # What Checkout posts to the callback, and what Razorpay's webhooks carry.
    def callback_fields(self, payment: dict[str, Any]) -> dict[str, str]:
        order_id, payment_id = payment["order_id"], payment["id"]
        return {
            "razorpay_payment_id": payment_id,
            "razorpay_order_id": order_id,
            "razorpay_signature": sign(f"{order_id}|{payment_id}".encode(), KEY_SECRET),
        }

    def failure_fields(self, payment: dict[str, Any]) -> dict[str, str]:
        return {
            "error[code]": "BAD_REQUEST_ERROR",
            "error[description]": "Payment failed",
            "error[source]": "customer",
            "error[step]": "payment_authorization",
            "error[reason]": "payment_failed",
            "error[metadata]": json.dumps(
                {"payment_id": payment["id"], "order_id": payment["order_id"]}
            ),
        }

    def event(
        self, name: str, payment: dict[str, Any], refund: dict[str, Any] | None = None
    ) -> bytes:
        payload: dict[str, Any] = {"payment": {"entity": payment}}
        if name == "order.paid":
            payload["order"] = {"entity": self.orders[payment["order_id"]]}
        if refund is not None:
            payload["refund"] = {"entity": refund}
        body = {
            "entity": "event",
            "account_id": "acc_standin",
            "event": name,
            "contains": list(payload),
            "payload": payload,
            "created_at": 1_780_000_200,
        }
        return json.dumps(body).encode()

    def refund(self, payment: dict[str, Any], amount: int | None = None) -> dict[str, Any]:
        refund = {
            "id": f"rfnd_{secrets.token_hex(7)}",
            "entity": "refund",
            "amount": amount if amount is not None else payment["amount"],
            "currency": payment["currency"],
            "payment_id": payment["id"],
            "status": "processed",
            "created_at": 1_780_000_300,
        }
        with self.lock:
            payment["amount_refunded"] += refund["amount"]
        return refund

    def deliver(self, target: str, body: bytes, *, secret: str = WEBHOOK_SECRET) -> httpx.Response:
        """POST a webhook to ``target`` (a maskline base URL) as Razorpay signs it."""
        return httpx.post(
            f"{target}/v1/payments/razorpay/webhook",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Razorpay-Signature": sign(body, secret),
                "X-Razorpay-Event-Id": f"evt_{secrets.token_hex(7)}",
            },
            timeout=30,
        )


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: dict[str, Any]) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def _authorized(self) -> bool:
            wanted = base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()
            if self.headers.get("Authorization") == f"Basic {wanted}":
                return True
            self._json(401, error("authentication failed"))
            return False

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/v1/checkout.js":
                self._send(
                    200,
                    CHECKOUT_JS.replace("__STANDIN__", json.dumps(standin.url)).encode(),
                    "text/javascript",
                )
                return
            if parts.path == "/checkout/page":
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                page = PAGE.format(
                    amount=html.escape(query.get("amount", "")),
                    order_id=html.escape(query.get("order_id", "")),
                    callback_url=html.escape(query.get("callback_url", "")),
                )
                self._send(200, page.encode(), "text/html; charset=utf-8")
                return
            if parts.path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
                return
            if parts.path.startswith("/v1/payments/") and self._authorized():
                payment = standin.payments.get(parts.path.rsplit("/", 1)[1])
                if payment is None:
                    self._json(
                        400,
                        error("no such payment"),
                    )
                else:
                    self._json(200, payment)
                return
            if not self.headers.get("Authorization"):
                self._json(404, error("not found"))

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/checkout/pay":
                form = {k: v[0] for k, v in parse_qs(self._body().decode()).items()}
                if form["outcome"] == "failed":
                    payment = standin.pay(form["order_id"], status="failed")
                    fields = standin.failure_fields(payment)
                else:
                    payment = standin.pay(form["order_id"])
                    fields = standin.callback_fields(payment)
                inputs = "".join(
                    f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                    for k, v in fields.items()
                )
                page = CALLBACK.format(action=html.escape(form["callback_url"]), fields=inputs)
                self._send(200, page.encode(), "text/html; charset=utf-8")
                return
            if not self._authorized():
                return
            body = json.loads(self._body() or b"{}")
            if parts.path == "/v1/orders":
                self._json(200, standin.create_order(body))
            elif parts.path.startswith("/v1/payments/") and parts.path.endswith("/capture"):
                status, value = standin.capture(parts.path.split("/")[3], body)
                self._json(status, value)
            else:
                self._json(404, error("not found"))

    return Handler


@contextmanager
def razorpay_standin() -> Iterator[StandIn]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(StandIn(port=0)))
    standin = StandIn(port=server.server_address[1])
    server.RequestHandlerClass = _handler(standin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
