"""Where a POST's time goes: py-spy on a maskline API process under wrk's load, summed by
area; what PostgreSQL's connections are doing meanwhile; SQLite's write turn; and the
database statements of one POST.

``make bench-profile`` (``python -m bench.post_profile [postgresql|sqlite ...]``; root, or
ptrace allowed, for py-spy). The raw profiles go to ``PROFILE_DIR`` (``maskline-profiles``
in the temporary directory): outputs, never part of the repository.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg
import httpx
import uvicorn
import uvloop
from sqlalchemy import event

from bench.calls import SECRET, unlimited_org
from bench.loadgen import WrkRun, run_wrk
from bench.numbers import parties
from bench.post import CONNECTIONS, THREADS, WARMUP_SEC, analyze
from bench.setups import REDIS_URL, Running, embedded_sqlite, postgresql_apis
from bench.stats import percentile
from maskline.app import create_app
from maskline.settings import Settings
from tests.support.databases import fresh_database
from tests.support.server import free_port

PY_SPY = Path(sys.executable).parent / "py-spy"
PROFILE_DIR = Path(tempfile.gettempdir()) / "maskline-profiles"
PROFILE_SEC = 15
RATE_HZ = 100
# wrk runs this much longer than py-spy, so that the profile sees load from start to end.
MARGIN_SEC = 3

# Areas, innermost first: a sample counts as "self" for the innermost frame that belongs
# to an area (so the ORM work that the key lookup runs counts as ORM), and as "total" for
# every area that any of its frames belongs to.
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("database driver (asyncpg, aiosqlite, sqlite3)",
     ("asyncpg/", "aiosqlite/", "sqlite3/", "dialects/postgresql/asyncpg.py",
      "dialects/sqlite/aiosqlite.py")),
    ("SQLAlchemy (ORM flush, compile, execute, results)", ("sqlalchemy/",)),
    ("rate limiting (limits, coredis / Redis)", ("limits/", "coredis/", "kit/ratelimit.py")),
    ("JSON, response building", ("json/", "fastapi/encoders.py", "starlette/responses.py")),
    ("pydantic, validation", ("pydantic/", "pydantic_core/", "calls/intake.py", "kit/phone.py")),
    ("auth + key lookup (maskline/keys)", ("maskline/keys/",)),
    ("write lock, sessions (maskline/kit/db.py)", ("maskline/kit/db.py",)),
    ("SIP stack: sippy (parsing, transactions, UAs, its thread)", ("sippy/",)),
    ("RTP relay (maskline/telephony/media)", ("maskline/telephony/media/",)),
    ("sip carrier (maskline/telephony/sip: legs, agents, SDP)", ("maskline/telephony/sip/",)),
    ("group-commit writer (maskline/kit/writer.py)", ("maskline/kit/writer.py",)),
    ("call engine, sim carrier, background loops",
     ("maskline/calls/engine.py", "maskline/calls/runner.py", "maskline/calls/watchdog.py",
      "maskline/telephony/", "maskline/kit/loops.py")),
    ("maskline, the rest (calls, billing, numbers, webhooks, ...)", ("maskline/",)),
    ("thread pool hop (sync dependencies: anyio, run_in_threadpool)",
     ("anyio/", "starlette/concurrency.py")),
    ("FastAPI / Starlette routing, dependencies, middleware", ("fastapi/", "starlette/")),
    ("uvicorn, HTTP parsing (h11)", ("uvicorn/", "httptools/", "h11/")),
    ("asyncio, uvloop, threads, logging", ("asyncio/", "uvloop/", "threading.py", "logging/")),
]  # fmt: skip
OTHER = "other"
# The frames every sample of the main thread starts with (the maskline command, click,
# uvicorn's Server.run) end at the event loop's run: left out, so that they count for no area.
LOOP_RUN = "Runner.run (asyncio/runners.py:"
THREAD_RUN = "Thread._bootstrap (threading.py:"
# Who the work is for, by a frame of the stack (the first that matches).
CALLERS: list[tuple[str, str]] = [
    ("HTTP requests (a uvicorn protocol frame)", "uvicorn/protocols/"),
    ("background loops (engine, worker: kit/loops.py)", "maskline/kit/loops.py"),
    ("the engine's call runners (calls/runner.py)", "maskline/calls/runner.py"),
    ("the sim carrier's legs (telephony/sim)", "maskline/telephony/sim/"),
    ("the sip carrier (telephony/sip)", "maskline/telephony/sip/"),
    ("sippy's SIP stack (its own thread)", "sippy/"),
    ("the RTP relay (telephony/media)", "maskline/telephony/media/"),
]
# SQLAlchemy's async sessions run their sync code in greenlets; py-spy shows a greenlet's
# stack from its own first frame, without the task that it works for.
GREENLET = "sync session code in SQLAlchemy's greenlets (py-spy does not see for whom)"
# Within the database work: samples with any frame matching (they overlap).
PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("awaiting the driver for SQLAlchemy (greenlet_spawn: asyncpg or aiosqlite calls)",
     ("greenlet_spawn (",)),
    ("statement cache key + compile (_compile_w_cache)", ("_compile_w_cache (",)),
    ("ORM flush (Session.flush, persistence)", ("Session.flush (", "orm/persistence.py")),
    ("ORM loading rows into objects (orm/loading.py)", ("orm/loading.py",)),
    ("building statements (sql/coercions.py, select/insert/update constructs)",
     ("sql/coercions.py",)),
    ("pool pre-ping (BEGIN, ';', ROLLBACK)", ("_async_ping (", "do_ping (")),
    ("BEGIN / COMMIT / ROLLBACK", ("_start_transaction (", "Transaction.commit (",
                                  "Transaction.rollback (", "Connection.commit (",
                                  "Connection.rollback (")),
    ("write lock turn (Database.write)", ("Database.write (",)),
]  # fmt: skip


def area_of(frame: str) -> str | None:
    for area, markers in AREAS:
        if any(marker in frame for marker in markers):
            return area
    return None


def caller_of(frames: list[str]) -> str:
    if not frames[0].startswith((LOOP_RUN, THREAD_RUN)):
        return GREENLET
    for who, marker in CALLERS:
        if any(marker in frame for frame in frames):
            return who
    if frames[0].startswith(THREAD_RUN):
        return "other threads"
    return "the event loop itself, other tasks"


@dataclass
class Profile:
    samples: int = 0
    self_by_area: Counter[str] = field(default_factory=Counter)
    total_by_area: Counter[str] = field(default_factory=Counter)
    self_by_function: Counter[str] = field(default_factory=Counter)
    by_phase: Counter[str] = field(default_factory=Counter)
    by_caller: Counter[str] = field(default_factory=Counter)


def read_collapsed(path: Path) -> Profile:
    """py-spy's ``--format raw`` (collapsed stacks, root first, one ``stack count`` a line)."""
    profile = Profile()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        loop_runs = [n for n, frame in enumerate(frames) if frame.startswith(LOOP_RUN)]
        if loop_runs:
            frames = frames[loop_runs[-1] :]
        profile.samples += count
        profile.by_caller[caller_of(frames)] += count
        areas = [area_of(frame) for frame in frames]
        innermost = next(
            ((frame, area) for frame, area in zip(reversed(frames), reversed(areas), strict=True)
             if area is not None),
            (frames[-1], OTHER),
        )  # fmt: skip
        profile.self_by_area[innermost[1]] += count
        profile.self_by_function[innermost[0]] += count
        for area in {a or OTHER for a in areas}:
            profile.total_by_area[area] += count
        for phase, markers in PHASES:
            if any(marker in frame for frame in frames for marker in markers):
                profile.by_phase[phase] += count
    return profile


def summary(profile: Profile, *, seconds: float, top: int = 15) -> str:
    held = profile.samples / (seconds * RATE_HZ)
    lines = [
        f"{profile.samples} samples of the thread holding the GIL in {seconds:.0f} s at "
        f"{RATE_HZ} Hz: the GIL was held {held:.0%} of the time",
        "",
        "| area | self | total |",
        "| --- | ---: | ---: |",
    ]
    for area, count in profile.self_by_area.most_common():
        total = profile.total_by_area[area]
        lines.append(f"| {area} | {count / profile.samples:.1%} | {total / profile.samples:.1%} |")
    lines += ["", "| for | samples |", "| --- | ---: |"]
    for caller, count in profile.by_caller.most_common():
        lines.append(f"| {caller} | {count / profile.samples:.1%} |")
    lines += ["", "| inside the database work (overlapping) | samples with it |", "| --- | ---: |"]
    for phase, _markers in PHASES:
        lines.append(f"| {phase} | {profile.by_phase[phase] / profile.samples:.1%} |")
    lines += ["", f"innermost frames in an area, top {top} (self):", ""]
    for frame, count in profile.self_by_function.most_common(top):
        lines.append(f"- {count / profile.samples:.1%} {frame}")
    return "\n".join(lines)


def _connection_state(state: str, wait_type: str | None, wait: str | None, query: str) -> str:
    # The statement's first words ("UPDATE wallets"): which row a lock wait is for, or
    # what a transaction waiting for the app did last.
    statement = " ".join(query.split()[:3]) if query else "?"
    if state == "active" and wait_type == "Lock":
        return f"waiting for a lock ({wait}) in: {statement}"
    if state == "active":
        return f"active, waiting: {wait_type}/{wait}" if wait_type else "active"
    if state == "idle in transaction":
        return f"idle in transaction, waiting for the app after: {statement}"
    return state


class ConnectionStates:
    """Samples ``pg_stat_activity`` for one database in a thread of its own: what its
    client connections are doing (running, waiting for a lock, waiting for the app
    inside a transaction, idle)."""

    def __init__(self, database_url: str, *, every_sec: float = 0.02) -> None:
        self._dsn = database_url
        self._every = every_sec
        self._stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()))

    async def _sample(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'"
                )
                self.samples += 1
                for state, wait_type, wait, query in rows:
                    self.counts[_connection_state(state, wait_type, wait, query)] += 1
                await asyncio.sleep(self._every)
        finally:
            await conn.close()

    def __enter__(self) -> ConnectionStates:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        lines = [
            f"PostgreSQL's client connections meanwhile ({self.samples} samples of "
            "pg_stat_activity; the LISTEN connections count as idle):",
            "",
            "| state | connections on average |",
            "| --- | ---: |",
        ]
        for what, count in self.counts.most_common():
            lines.append(f"| {what} | {count / max(self.samples, 1):.1f} |")
        return "\n".join(lines)


def _profile_under_load(running: Running, output: Path, role: str | None = None) -> WrkRun:
    """Profile the process of ``role`` (the first API process when None) under wrk."""
    targets, key = running.addresses, running.key
    run_wrk(targets, key, block=0, connections=CONNECTIONS, threads=THREADS, seconds=WARMUP_SEC)
    asyncio.run(analyze(running.database_url))  # the steady state's plans (bench/post.py)
    measured: list[WrkRun] = []
    load = threading.Thread(
        target=lambda: measured.append(
            run_wrk(
                targets,
                key,
                block=THREADS,
                connections=CONNECTIONS,
                threads=THREADS,
                seconds=PROFILE_SEC + 2 * MARGIN_SEC,
            )
        )
    )
    load.start()
    time.sleep(MARGIN_SEC)
    process = running.api_processes[0] if role is None else running.processes[role]
    py_spy_record(process.pid, output, seconds=PROFILE_SEC)
    load.join()
    return measured[0]


def py_spy_record(pid: int, output: Path, *, seconds: float) -> None:
    """Record ``pid`` for ``seconds`` at ``RATE_HZ`` into ``output`` (collapsed stacks)."""
    # --gil: only the thread holding the GIL is sampled. Without it py-spy counts threads
    # blocked in a lock (the thread pool's idle workers, aiosqlite's threads waiting for
    # work) as busy.
    command = [
        str(PY_SPY), "record", "--pid", str(pid), "--gil", "--duration", f"{seconds:g}",
        "--rate", str(RATE_HZ), "--format", "raw", "--output", str(output),
    ]  # fmt: skip
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def profile_post(kind: str, directory: Path) -> str:
    """Profile one process while wrk loads every API process: ``postgresql``, the first
    of 2 API processes (with Redis limits); ``engine``, the engine process beside them
    (and a worker), which dials every accepted call on the sim; ``sqlite``, the embedded
    process."""
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"post-{kind}.txt"
    states = ""
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "postgresql":
            with (
                postgresql_apis(Path(tmp), stack=False) as running,
                ConnectionStates(running.database_url) as seen,
            ):
                run = _profile_under_load(running, output)
            states = "\n\n" + seen.summary()
        elif kind == "engine":
            with postgresql_apis(Path(tmp), stack=True) as running:
                run = _profile_under_load(running, output, role="engine")
        else:
            with embedded_sqlite(Path(tmp)) as running:
                run = _profile_under_load(running, output)
    return (
        f"{kind}: {run.rate():.0f} accepted/s during the profile (p50 {run.p50_sec * 1000:.1f} ms,"
        f" p99 {run.p99_sec * 1000:.1f} ms, not 201: {run.other_than(201) or 0}); {output}\n"
        + summary(read_collapsed(output), seconds=PROFILE_SEC)
        + states
    )


class TimedTurn:
    """Stands in for the group writer's turn (on SQLite an ``asyncio.Lock`` held around
    each batch): how long each batch waited for it, and held it."""

    def __init__(self, turn: Any) -> None:
        self.inner = turn
        self._since = 0.0
        self.waits: list[float] = []
        self.holds: list[float] = []

    async def __aenter__(self) -> None:
        asked = time.perf_counter()
        await self.inner.__aenter__()
        self._since = time.perf_counter()
        self.waits.append(self._since - asked)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.holds.append(time.perf_counter() - self._since)
        await self.inner.__aexit__(kind, exc, tb)


async def _serve_timed(url: str, data_dir: Path) -> tuple[list[float], list[float], WrkRun]:
    settings = Settings(
        _env_file=None, database_url=url, secret_key=SECRET, data_dir=data_dir,
        log_level="WARNING",
    )  # fmt: skip
    app = create_app(settings, announce=lambda _c: None)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.05)
    runtime = app.state.runtime
    key = await unlimited_org(runtime, "write-turn", ["918099000004"])
    target = [f"127.0.0.1:{port}"]
    await asyncio.to_thread(
        run_wrk, target, key, block=0, connections=CONNECTIONS, threads=THREADS,
        seconds=WARMUP_SEC,
    )  # fmt: skip
    await analyze(url)
    # The turn is private to the writer (held around each batch); a benchmark may look
    # inside.
    writer = runtime.db.writer
    turn = TimedTurn(writer._turn)
    writer._turn = turn
    batches, units = writer.batches, writer.units
    run = await asyncio.to_thread(
        run_wrk, target, key, block=THREADS, connections=CONNECTIONS, threads=THREADS,
        seconds=PROFILE_SEC,
    )  # fmt: skip
    writer._turn = turn.inner
    batches, units = writer.batches - batches, writer.units - units
    print(
        f"sqlite: {units} units in {batches} batches during the run "
        f"({units / max(1, batches):.1f} a batch)",
        flush=True,
    )
    # What the wrk run saw; the engine goes on with the calls still queued.
    waits, holds = list(turn.waits), list(turn.holds)
    server.should_exit = True
    await serving
    return waits, holds, run


def write_turn() -> str:
    """SQLite's write turn under the same load, in an embedded app served in this process."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(Path(tmp), kind="sqlite") as url,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        waited, held, run = runner.run(_serve_timed(url, Path(tmp) / "data"))
    waits = [w * 1000 for w in waited]
    holds = [h * 1000 for h in held]
    accepted = run.statuses.get(201, 0)
    return (
        f"SQLite's write turn (maskline/kit/db.py) in an embedded app under wrk "
        f"({run.rate():.0f} accepted/s, {PROFILE_SEC} s): {len(holds)} write units "
        f"({len(holds) / max(accepted, 1):.1f} per accepted POST), held "
        f"{sum(holds) / 1000 / run.seconds:.0%} of the time; each held p50 "
        f"{percentile(holds, 0.5):.1f} ms, p99 {percentile(holds, 0.99):.1f} ms, mean "
        f"{statistics.fmean(holds):.1f} ms; waited for p50 {percentile(waits, 0.5):.1f} ms, "
        f"p99 {percentile(waits, 0.99):.1f} ms"
    )


@dataclass
class Statements:
    """What one database engine was asked to do: statements in order, and their time."""

    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0


@contextmanager
def recording_statements(*engines: Any) -> Iterator[Statements]:
    """Every statement the ``engines`` send (a database's reads and, on SQLite, its
    writer's), with transaction starts, commits, rollbacks and pool pre-pings (each a
    round trip on PostgreSQL), and the time spent in the driver."""
    seen = Statements()
    started: list[float] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.lines.append(" ".join(statement.split()))
        started.append(time.perf_counter())

    def after(*_args: Any) -> None:
        seen.seconds += time.perf_counter() - started.pop()

    def marker(text: str) -> Any:
        return lambda *_args: seen.lines.append(text)

    hooks = [
        ("before_cursor_execute", before),
        ("after_cursor_execute", after),
        ("begin", marker("(begin)")),
        ("commit", marker("(commit)")),
        ("rollback", marker("(rollback)")),
    ]
    pings: list[tuple[Any, Any]] = []
    for engine in engines:
        sync = engine.sync_engine
        dialect = sync.dialect
        pings.append((dialect, dialect.do_ping))

        def counted_ping(dbapi_connection: Any, ping: Any = dialect.do_ping) -> bool:
            seen.lines.append("(pre-ping)")
            return bool(ping(dbapi_connection))

        for name, hook in hooks:
            event.listen(sync, name, hook)
        dialect.do_ping = counted_ping
    try:
        yield seen
    finally:
        for dialect, ping in pings:
            dialect.do_ping = ping
        for engine in engines:
            for name, hook in hooks:
                event.remove(engine.sync_engine, name, hook)


async def _one_post(url: str, data_dir: Path, redis_url: str | None) -> tuple[Statements, float]:
    settings = Settings(
        _env_file=None,
        database_url=url,
        secret_key=SECRET,
        data_dir=data_dir,
        redis_url=redis_url,
        log_level="WARNING",
    )
    app = create_app(settings, role="api", announce=lambda _c: None)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        api_key = await unlimited_org(runtime, "statements", ["918099000003"])
        headers = {"Authorization": f"Bearer {api_key}"}
        counter = parties()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

            async def post() -> None:
                body = {"party_a": str(next(counter)), "party_b": str(next(counter))}
                response = await http.post("/v1/masking/calls", headers=headers, json=body)
                assert response.status_code == 201, response.text

            # The key's first use also records when it was last used: not every POST's work.
            for _ in range(3):
                await post()
            with recording_statements(*runtime.db.engines) as seen:
                started = time.perf_counter()
                await post()
                elapsed = time.perf_counter() - started
    return seen, elapsed


def statements_per_post(kind: str) -> str:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), kind=kind) as url:
        redis_url = REDIS_URL if kind == "postgresql" else None
        seen, elapsed = asyncio.run(_one_post(url, Path(tmp) / "data", redis_url))
    statements = [line for line in seen.lines if not line.startswith(("(", "BEGIN"))]
    lines = [
        f"one POST on {kind} (in-process, api role, unloaded): {len(statements)} statements in "
        f"{seen.lines.count('(begin)')} transactions, {seen.lines.count('(pre-ping)')} pool "
        f"pre-pings (on PostgreSQL each is BEGIN, ';', ROLLBACK); {seen.seconds * 1000:.1f} ms "
        f"in the driver's execute of {elapsed * 1000:.1f} ms in all"
    ]
    lines += [f"  {n}. {line[:160]}" for n, line in enumerate(seen.lines, 1)]
    return "\n".join(lines)


def main() -> None:
    kinds = sys.argv[1:] or ["postgresql", "engine", "sqlite"]
    for kind in kinds:
        if kind != "engine":
            print(statements_per_post(kind), flush=True)
        print(profile_post(kind, PROFILE_DIR), flush=True)
        if kind == "sqlite":
            print(write_turn(), flush=True)


if __name__ == "__main__":
    main()
