"""SPEC §11: ``/readyz`` is 200 when the database answers, the schema is current and the
carrier is ready; 503 naming the failing check otherwise."""

from __future__ import annotations

from pathlib import Path

from maskline.settings import Settings
from tests.conftest import make_settings
from tests.support.api import Api, running_api
from tests.support.sipp import free_udp_port

READY = {"database": "ok", "migrations": "ok", "carrier": "ok"}


class TestReadyz:
    async def test_an_engine_process_is_ready_once_its_carrier_is(self, api: Api) -> None:
        response = await api.client.get("/readyz")
        assert (response.status_code, response.json()) == (
            200,
            {"status": "ready", "checks": READY},
        )

    async def test_an_api_process_has_no_carrier_to_check(self, settings: Settings) -> None:
        async with running_api(settings, role="api") as api:
            response = await api.client.get("/readyz")
        assert (response.status_code, response.json()) == (
            200,
            {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}},
        )

    async def test_a_closed_carrier_is_503(self, api: Api) -> None:
        engine = api.runtime.engine
        assert engine is not None
        await engine.carriers["sim"].close()
        response = await api.client.get("/readyz")
        assert (response.status_code, response.json()) == (
            503,
            {
                "status": "not_ready",
                "checks": {"database": "ok", "migrations": "ok", "carrier": "not ready (sim)"},
            },
        )

    async def test_the_sip_carrier_is_ready_while_its_thread_and_socket_run(
        self, own_database: str, tmp_path: Path
    ) -> None:
        settings = make_settings(
            own_database,
            tmp_path / "data",
            carrier="sip",
            sip_trunk="127.0.0.1:9",
            sip_bind=f"127.0.0.1:{free_udp_port()}",
            rtp_ports="23100-23199",
        )
        async with running_api(settings, role="engine") as api:
            response = await api.client.get("/readyz")
            engine = api.runtime.engine
            assert engine is not None
            sip = engine.carriers["sip"]
        assert (response.status_code, response.json()) == (
            200,
            {"status": "ready", "checks": READY},
        )
        assert sip.ready is False  # closed with the app
