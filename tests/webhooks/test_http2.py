"""Issue 15: webhooks go over HTTP/2 where the receiver offers it (TLS with ALPN), to
the checked address, with the host's name as TLS server name and ``:authority``, and
signed as over HTTP/1.1 (SPEC §6); over HTTP/1.1 and TLS where it offers only that."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config

from maskline.kit.clock import ScaledClock
from maskline.webhooks.delivery import H2_RECHECK_SEC, Clients, attempt
from maskline.webhooks.signing import standard_signature
from tests.calls.conftest import call_settings
from tests.support.api import Api, running_api
from tests.support.server import free_port
from tests.support.waits import eventually_value
from tests.webhooks.conftest import SPEED, point_at, webhook_test_events


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` (and 127.0.0.1) that is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "receiver.pem", directory / "receiver.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class Arrival:
    http_version: str
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int]  # the connection's far end


@dataclass
class Http2Receiver:
    """Hypercorn on a thread of its own, TLS with ALPN (h2, http/1.1), answering 204."""

    port: int
    cert_file: Path
    arrivals: list[Arrival] = field(default_factory=list)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.arrivals.append(Arrival(scope["http_version"], headers, body, scope["client"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.contextmanager
def tls_receiver(directory: Path, alpn: list[str]) -> Iterator[Http2Receiver]:
    """A receiver offering ``alpn`` over TLS."""
    cert_file, key_file = self_signed(directory)
    receiver = Http2Receiver(free_port(), cert_file)
    config = Config()
    config.bind = [f"127.0.0.1:{receiver.port}"]
    config.certfile, config.keyfile = str(cert_file), str(key_file)
    config.alpn_protocols = alpn
    config.accesslog = config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    def run() -> None:
        async def main() -> None:
            started.set()
            await serve(receiver.app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

        loop.run_until_complete(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield receiver
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@pytest.fixture
def h2_receiver(tmp_path: Path) -> Iterator[Http2Receiver]:
    with tls_receiver(tmp_path, ["h2", "http/1.1"]) as receiver:
        yield receiver


@pytest.fixture
def h1_receiver(tmp_path: Path) -> Iterator[Http2Receiver]:
    with tls_receiver(tmp_path, ["http/1.1"]) as receiver:
        yield receiver


@contextlib.asynccontextmanager
async def api_trusting(
    database_url: str, directory: Path, receiver: Http2Receiver
) -> AsyncIterator[Api]:
    settings = call_settings(
        database_url, directory / "data", webhook_ca_file=str(receiver.cert_file)
    )
    async with running_api(settings, clock=ScaledClock(SPEED)) as running:
        yield running


@pytest.fixture
async def tls_api(
    database_url: str, tmp_path: Path, h2_receiver: Http2Receiver
) -> AsyncIterator[Api]:
    async with api_trusting(database_url, tmp_path, h2_receiver) as running:
        yield running


class TestHttp2:
    async def test_a_receiver_offering_h2_gets_signed_http2_posts(
        self, tls_api: Api, h2_receiver: Http2Receiver
    ) -> None:
        org = await tls_api.make_org(f"h2-{uuid.uuid4().hex[:8]}")
        await point_at(tls_api, org, f"https://localhost:{h2_receiver.port}/hooks")
        events = await webhook_test_events(tls_api, org, count=3)

        arrivals = await eventually_value(
            lambda: list(h2_receiver.arrivals), lambda got: len(got) >= 3, within=20
        )
        assert [a.http_version for a in arrivals] == ["2", "2", "2"]
        assert sorted(a.headers["webhook-id"] for a in arrivals) == sorted(
            e.event_id for e in events
        )
        for arrival in arrivals:
            # The name the URL gave (``:authority``, which ASGI names ``host``), though
            # the connection went to the checked address.
            assert arrival.headers["host"] == f"localhost:{h2_receiver.port}"
            timestamp = int(arrival.headers["webhook-timestamp"])
            assert arrival.headers["webhook-signature"] == standard_signature(
                org.webhook_secret, arrival.headers["webhook-id"], timestamp, arrival.body
            )

    async def test_once_an_answer_came_over_http2_attempts_share_its_connection(
        self, tls_api: Api, h2_receiver: Http2Receiver
    ) -> None:
        org = await tls_api.make_org(f"h2-one-{uuid.uuid4().hex[:8]}")
        await point_at(tls_api, org, f"https://localhost:{h2_receiver.port}/hooks")
        await webhook_test_events(tls_api, org)
        await eventually_value(lambda: list(h2_receiver.arrivals), lambda got: len(got) == 1)
        await webhook_test_events(tls_api, org, count=8)

        arrivals = await eventually_value(
            lambda: list(h2_receiver.arrivals), lambda got: len(got) >= 9, within=20
        )
        assert [a.http_version for a in arrivals] == ["2"] * 9
        assert len({a.client for a in arrivals}) == 1


class TestHttp1OverTls:
    async def test_a_receiver_offering_only_http1_gets_every_post_over_it(
        self, database_url: str, tmp_path: Path, h1_receiver: Http2Receiver
    ) -> None:
        # The first attempt asks (ALPN offering h2); the answer over HTTP/1.1 sends the
        # later ones to the HTTP/1.1 client, over TLS to the same checked address.
        async with api_trusting(database_url, tmp_path, h1_receiver) as api:
            org = await api.make_org(f"h1-{uuid.uuid4().hex[:8]}")
            await point_at(api, org, f"https://localhost:{h1_receiver.port}/hooks")
            await webhook_test_events(api, org)
            await eventually_value(lambda: list(h1_receiver.arrivals), lambda got: len(got) == 1)
            events = await webhook_test_events(api, org, count=4)
            arrivals = await eventually_value(
                lambda: list(h1_receiver.arrivals), lambda got: len(got) >= 5, within=20
            )
        assert [a.http_version for a in arrivals] == ["1.1"] * 5
        assert sorted(a.headers["webhook-id"] for a in arrivals[1:]) == sorted(
            e.event_id for e in events
        )
        for arrival in arrivals:
            assert arrival.headers["host"] == f"localhost:{h1_receiver.port}"
            assert arrival.headers["user-agent"] == "maskline-webhooks/1"
            assert arrival.headers["content-type"] == "application/json"
            assert arrival.headers["accept-encoding"] == "identity"
            timestamp = int(arrival.headers["webhook-timestamp"])
            assert arrival.headers["webhook-signature"] == standard_signature(
                org.webhook_secret, arrival.headers["webhook-id"], timestamp, arrival.body
            )

    async def test_a_receiver_that_answered_over_http1_is_asked_again_after_ten_minutes(
        self, h1_receiver: Http2Receiver
    ) -> None:
        # Which client sends shows in the connections: the question goes through a pool
        # of its own (a new connection), the answers over HTTP/1.1 through one kept alive.
        clock = [1000.0]
        clients = Clients(ca_file=h1_receiver.cert_file, monotonic=lambda: clock[0])
        url = f"https://localhost:{h1_receiver.port}/hooks"
        results = []
        try:
            for step in range(5):
                if step == 3:
                    clock[0] += H2_RECHECK_SEC
                now = datetime.now(UTC)
                results.append(
                    await attempt(
                        clients,
                        url=url,
                        body=b'{"event":"webhook.test"}',
                        msg_id=f"evt_{step}",
                        secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                        timestamp=int(now.timestamp()),
                        allow_private=True,
                        now=now,
                    )
                )
        finally:
            await clients.aclose()
        assert [(r.ok, r.status_code) for r in results] == [(True, 204)] * 5
        ports = [arrival.client[1] for arrival in h1_receiver.arrivals]
        asked, kept, asked_again = ports[0], ports[1], ports[3]
        assert len({asked, kept, asked_again}) == 3
        assert ports == [asked, kept, kept, asked_again, kept]
