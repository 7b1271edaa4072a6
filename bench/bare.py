"""The yardstick for POST /v1/masking/calls: FastAPI + asyncpg doing one INSERT, nothing else.

Run by ``bench/post.py`` under uvicorn with as many worker processes as maskline
gets API processes: ``BARE_DSN=postgresql://… uvicorn --factory bench.bare:create_app``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from pydantic import BaseModel

SCHEMA = """
CREATE TABLE IF NOT EXISTS bare_calls (
    id bigserial PRIMARY KEY,
    party_a text NOT NULL,
    party_b text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


class NewCall(BaseModel):
    party_a: str
    party_b: str


def create_app() -> FastAPI:
    dsn = os.environ["BARE_DSN"]
    pool: list[asyncpg.Pool] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool.append(await asyncpg.create_pool(dsn, min_size=2, max_size=10))
        yield
        await pool[0].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/masking/calls", status_code=201)
    async def create_call(call: NewCall) -> dict[str, object]:
        row_id = await pool[0].fetchval(
            "INSERT INTO bare_calls (party_a, party_b) VALUES ($1, $2) RETURNING id",
            call.party_a,
            call.party_b,
        )
        return {"data": {"id": row_id}}

    return app
