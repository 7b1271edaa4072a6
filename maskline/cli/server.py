from __future__ import annotations

import gc
import sys

import click

from maskline.cli.context import Command, run
from maskline.cli.options import json_option
from maskline.cli.output import emit
from maskline.kit.migrate import upgrade

ROLES = ("all", "api", "engine", "worker")
# How long a thread that wants the GIL waits for a busy one (CPython's default: 5 ms).
# Measured (docs/decisions.md): a SQLite statement's hop under a busy loop, 19.7 ms →
# 13.8 ms; the SIP connect on the PostgreSQL engine at 100 calls/s, p50 2.5 s → 0.18 s
# (when sippy still ran in threads of its own).
SWITCH_INTERVAL_SEC = 0.0005
# The cyclic collector's thresholds (CPython's default: 700, 10, 10): a young collection
# after 50,000 new container objects, not 700; a full one after 200 young ones, not 100.
# An engine holds every live call's and every lingering SIP leg's objects, which each
# collection that reaches them walks: by default one at 100 calls/s spent a quarter of
# its CPU collecting, with pauses of up to 0.6 s (docs/decisions.md).
GC_THRESHOLDS = (50_000, 20, 10)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--role", type=click.Choice(ROLES), default="all", show_default=True)
def serve(host: str, port: int, role: str) -> None:
    """Run the API, call engine and workers (or one role)."""
    import uvicorn

    from maskline.app import create_app
    from maskline.kit.crypto import resolve_secret_key
    from maskline.kit.logging import configure_logging
    from maskline.settings import load_settings

    settings = load_settings()
    # Checked (and generated) before the server starts, so that a missing or short key is
    # one line on stderr and a non-zero exit, not a failed lifespan's traceback.
    resolve_secret_key(settings)
    configure_logging(
        settings.log_level,
        secrets=(settings.secret_key, settings.sip_password, settings.metrics_token),
    )
    app = create_app(settings, role=role)
    # What is loaded by now (modules, models, compiled schemas) lives as long as the
    # process: out of the collector's sight, a full collection under load scans only what
    # requests and calls create (measured: 6 of them took 1.3 s of an engine's 18 s CPU).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    # Every role with a thread beside its event loop hands work across the GIL many times
    # a request or a call: aiosqlite's statements (SQLite); sippy's sender thread, for the
    # few messages the SIP stack cannot send from the loop. A role with no such thread
    # never waits on the interval, so it is set for all.
    sys.setswitchinterval(SWITCH_INTERVAL_SEC)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        # HTTP/1.1 parsed in C (llhttp), not by h11 in Python: h11 was 9% of an API
        # process's CPU under load.
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        # The app trusts X-Forwarded-For from MASKLINE_TRUSTED_PROXIES only; uvicorn's
        # own handling would trust it from 127.0.0.1 (or FORWARDED_ALLOW_IPS).
        proxy_headers=False,
    )
    uvicorn.Server(config).run()


@click.command()
@json_option
def migrate(as_json: bool) -> None:
    """Bring the database schema up to date."""

    async def work(cmd: Command) -> str:
        return await upgrade(cmd.db)

    emit({"revision": run(work, migrate=False)}, as_json=as_json)
