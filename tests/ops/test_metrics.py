"""SPEC §11: ``GET /metrics`` in Prometheus text format, after real calls on the sim carrier."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from maskline.kit.clock import ScaledClock
from maskline.numbers import service as pool
from tests.calls.conftest import call_settings
from tests.conftest import make_settings
from tests.support.api import Api, OrgHandle, running_api
from tests.support.calls import billing, place, wait_for
from tests.support.receiver import receiving
from tests.support.sipp import free_udp_port
from tests.support.waits import eventually_value

# Slow enough that a bridged call's first 5 minutes of credit (15 s here) outlast the test.
SPEED = 20.0
TOKEN = "metrics-token-for-tests"

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


def labels(**values: str) -> Labels:
    return frozenset(values.items())


def parse(text: str) -> Samples:
    return {
        (sample.name, labels(**sample.labels)): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def series(samples: Samples, name: str) -> dict[Labels, float]:
    return {found: value for (sample, found), value in samples.items() if sample == name}


async def scrape(api: Api, **headers: str) -> Samples:
    response = await api.client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return parse(response.text)


async def settled(api: Api, org: OrgHandle, count: int, *, within: float = 20.0) -> None:
    """Wait until the organisation has ``count`` deliveries, all succeeded."""

    async def deliveries() -> list[tuple[str, str]]:
        response = await api.client.get(
            "/v1/webhooks/deliveries", headers=org.auth, params={"per_page": 100}
        )
        return [(row["event"], row["status"]) for row in response.json()["data"]]

    await eventually_value(
        deliveries,
        lambda rows: len(rows) == count and all(status == "succeeded" for _, status in rows),
        what=f"{count} deliveries, all succeeded",
        within=within,
    )


def call_back(sip_port: int, number: str) -> int:
    """A party calling ``number`` over SIP with no SDP offer: the final response's code
    (ACKed, as RFC 3261 wants for a refusal)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        port = sock.getsockname()[1]
        common = [
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{number[-4:]}-{time.time_ns()}",
            f"From: <sip:+919876543210@127.0.0.1:{port}>;tag=caller",
            f"Call-ID: back-{number}-{time.time_ns()}@127.0.0.1",
        ]
        to = f"To: <sip:{number}@127.0.0.1:{sip_port}>"
        invite = [
            f"INVITE sip:{number}@127.0.0.1:{sip_port} SIP/2.0",
            *common,
            to,
            "CSeq: 1 INVITE",
            f"Contact: <sip:+919876543210@127.0.0.1:{port}>",
            "Max-Forwards: 70",
            "Content-Length: 0",
        ]
        sock.sendto("\r\n".join([*invite, "", ""]).encode(), ("127.0.0.1", sip_port))
        while True:
            lines = sock.recv(65535).decode().split("\r\n")
            code = int(lines[0].split(" ")[1])
            if code >= 200:
                break
        answered_to = next(line for line in lines if line.lower().startswith("to:"))
        ack = [
            f"ACK sip:{number}@127.0.0.1:{sip_port} SIP/2.0",
            *common,
            answered_to,
            "CSeq: 1 ACK",
            "Max-Forwards: 70",
            "Content-Length: 0",
        ]
        sock.sendto("\r\n".join([*ack, "", ""]).encode(), ("127.0.0.1", sip_port))
        return code


@pytest.fixture
async def api(own_database: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = call_settings(own_database, tmp_path / "data", sim_talk_sec=3600)
    async with running_api(settings, clock=ScaledClock(SPEED)) as running:
        yield running


class TestMetrics:
    async def test_calls_money_webhooks_and_requests_are_reported_exactly(self, api: Api) -> None:
        org = await api.make_org("metrics", balance="100", numbers=1)
        with receiving() as receiver:
            receiver.script = [500]  # the very first attempt fails and is retried
            hooks = {"webhook_url": receiver.url, "record": False}

            talking = await place(api, org, **hooks)
            await wait_for(api, org, talking["call_sid"], ("in-progress",))
            during = await scrape(api)
            held = await billing(api, org)

            hangup = f"/v1/masking/calls/{talking['call_sid']}/hangup"
            assert (await api.client.post(hangup, headers=org.auth)).status_code == 200
            await wait_for(api, org, talking["call_sid"])
            busy = await place(api, org, party_a="9876540001", **hooks)
            unallocated = await place(api, org, party_b="9123450002", **hooks)
            assert (await wait_for(api, org, busy["call_sid"]))["hangup_cause"] == "USER_BUSY"
            assert (await wait_for(api, org, unallocated["call_sid"]))[
                "hangup_cause"
            ] == "UNALLOCATED_NUMBER"
            assert (await api.client.get("/no/such/route")).status_code == 404
            # 5 events of the completed call, 2 of the busy one, 4 of the one B failed.
            await settled(api, org, 11)
            after = await scrape(api)

        # While the first call talked: one live call, holding its first 5 pulses (5 × 150 paise).
        assert series(during, "maskline_calls") == {
            labels(status="in-progress", hangup_cause=""): 1
        }
        assert during[("maskline_live_calls", labels())] == 1
        assert during[("maskline_wallet_holds", labels())] == 1
        assert during[("maskline_wallet_holds_paise", labels())] == 750
        assert held["reserved"] == 7.5

        assert series(after, "maskline_calls") == {
            labels(status="completed", hangup_cause="NORMAL_CLEARING"): 1,
            labels(status="failed", hangup_cause="USER_BUSY"): 1,
            labels(status="failed", hangup_cause="UNALLOCATED_NUMBER"): 1,
        }
        assert after[("maskline_live_calls", labels())] == 0
        assert after[("maskline_wallet_holds", labels())] == 0
        assert after[("maskline_wallet_holds_paise", labels())] == 0

        assert series(after, "maskline_webhook_deliveries") == {
            labels(status="pending"): 0,
            labels(status="succeeded"): 11,
            labels(status="failed"): 0,
            labels(status="paused"): 0,
        }
        assert after[("maskline_webhook_oldest_due_seconds", labels())] == 0
        assert series(after, "maskline_webhook_attempts_total") == {
            labels(outcome="retry"): 1,
            labels(outcome="succeeded"): 11,
        }
        assert after[("maskline_webhook_delivery_lag_seconds_count", labels())] == 12

        # B was dialled twice (the busy A never answered), so two connect latencies.
        assert after[("maskline_connect_latency_seconds_count", labels())] == 2
        assert after[("maskline_connect_latency_seconds_bucket", labels(le="+Inf"))] == 2
        assert after[("maskline_inbound_calls_total", labels())] == 0

        requests = series(after, "maskline_http_requests_total")
        assert requests[labels(method="POST", route="/v1/masking/calls", status="201")] == 3
        hangups = labels(method="POST", route="/v1/masking/calls/{call_sid}/hangup", status="200")
        assert requests[hangups] == 1
        assert requests[labels(method="GET", route="unmatched", status="404")] == 1
        assert requests[labels(method="GET", route="/metrics", status="200")] == 1
        # Routes are templates: no call sid (or any raw path) ever becomes a label.
        assert {dict(found)["route"] for found in requests} == {
            "/v1/masking/calls",
            "/v1/masking/calls/{call_sid}",
            "/v1/masking/calls/{call_sid}/hangup",
            "/v1/masking/billing",
            "/v1/webhooks/deliveries",
            "/metrics",
            "unmatched",
        }
        created = labels(method="POST", route="/v1/masking/calls")
        assert after[("maskline_http_request_duration_seconds_count", created)] == 3

    async def test_each_app_counts_only_its_own_requests(
        self, api: Api, own_database: str, tmp_path: Path
    ) -> None:
        await api.client.get("/healthz")
        settings = make_settings(own_database, tmp_path / "other", metrics_token=None)
        async with running_api(settings, role="api") as other:
            first = await scrape(other)
        assert (
            "maskline_http_requests_total",
            labels(method="GET", route="/healthz", status="200"),
        ) not in first
        mine = await scrape(api)
        assert (
            mine[
                (
                    "maskline_http_requests_total",
                    labels(method="GET", route="/healthz", status="200"),
                )
            ]
            == 1
        )

    async def test_calls_to_pool_numbers_are_counted(
        self, own_database: str, tmp_path: Path
    ) -> None:
        sip_port = free_udp_port()
        settings = make_settings(
            own_database,
            tmp_path / "data",
            carrier="sip",
            sip_trunk="127.0.0.1:9",
            sip_bind=f"127.0.0.1:{sip_port}",
            rtp_ports="23300-23399",
        )
        async with running_api(settings, role="engine") as api:
            before = await scrape(api)
            async with api.runtime.db.write() as session:
                await pool.add_numbers(
                    session, ["918074000077"], org_id=None, now=api.runtime.clock.now()
                )
            # A pool number (counted, then refused: no SDP offer), and a number of no one's.
            codes = [
                await asyncio.to_thread(call_back, sip_port, number)
                for number in ("+918074000077", "+918074009999")
            ]
            after = await scrape(api)
        assert codes == [488, 480]
        assert before[("maskline_inbound_calls_total", labels())] == 0
        assert after[("maskline_inbound_calls_total", labels())] == 1


class TestMetricsToken:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ],
        ids=["missing", "wrong", "no-scheme", "basic"],
    )
    async def test_without_the_token_is_403_forbidden(
        self, database_url: str, tmp_path: Path, headers: dict[str, str]
    ) -> None:
        settings = make_settings(database_url, tmp_path / "data", metrics_token=TOKEN)
        async with running_api(settings, role="api") as api:
            response = await api.client.get("/metrics", headers=headers)
        assert response.status_code == 403
        assert response.json() == {
            "error": {"code": "forbidden", "message": "The metrics token is missing or wrong."}
        }

    async def test_with_the_token_is_200(self, database_url: str, tmp_path: Path) -> None:
        settings = make_settings(database_url, tmp_path / "data", metrics_token=TOKEN)
        async with running_api(settings, role="api") as api:
            samples = await scrape(api, Authorization=f"Bearer {TOKEN}")
        assert ("maskline_live_calls", labels()) in samples

    async def test_only_an_engine_process_reports_inbound_calls(
        self, database_url: str, tmp_path: Path
    ) -> None:
        settings = make_settings(database_url, tmp_path / "data")
        async with running_api(settings, role="api") as api:
            served = await scrape(api)
        async with running_api(settings, role="engine") as engine:
            engined = await scrape(engine)
        assert ("maskline_inbound_calls_total", labels()) not in served
        assert engined[("maskline_inbound_calls_total", labels())] == 0


class TestWriterFigures:
    async def test_a_call_placed_on_an_api_process_is_one_unit_in_one_batch(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """An API process writes nothing but what its requests ask for: one accepted call
        is one unit, committed in a batch of its own."""
        settings = make_settings(database_url, tmp_path / "data")
        async with running_api(settings, role="api") as api:
            org = await api.make_org("writer-figures", balance="10", numbers=2)
            # The key's first use, and any write it brings, before the first scrape.
            await place(api, org)
            before = await scrape(api)
            await place(api, org, party_a="9876543211", party_b="9123456780")
            after = await scrape(api)
        names = ("maskline_writer_batches_total", "maskline_writer_units_total")
        assert [after[(n, labels())] - before[(n, labels())] for n in names] == [1, 1]
        assert after[("maskline_writer_reruns_total", labels())] == 0
