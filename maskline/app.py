"""``create_app(settings)``: routers, error handlers and the lifespan. No work at import."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from maskline import __version__
from maskline.accounts import passwords
from maskline.accounts import service as accounts
from maskline.accounts.mail import Mailer
from maskline.billing.router import router as billing_router
from maskline.calls.engine import CallEngine
from maskline.calls.recorded import RecordedCalls
from maskline.calls.router import router as calls_router
from maskline.calls.tally import PAIR_DIGEST_PURPOSE
from maskline.errors import (
    AppError,
    ConfigurationError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    envelope,
)
from maskline.keys.principals import PrincipalCache
from maskline.kit.bodies import BodyLimitMiddleware
from maskline.kit.clock import Clock, SystemClock
from maskline.kit.crypto import KeyedDigest, SecretBox, resolve_secret_key
from maskline.kit.db import Database
from maskline.kit.guide import GUIDE_PATH, GuideSite
from maskline.kit.migrate import upgrade
from maskline.kit.notify import Topic, Wakeups
from maskline.kit.ratelimit import RateLimiter
from maskline.kit.routes import allowed_methods
from maskline.kit.web import RequestContextMiddleware
from maskline.numbers.lookup import PoolLookup
from maskline.onboarding.sandbox import SandboxCreated, bootstrap_sandbox
from maskline.openapi.document import install_openapi
from maskline.ops.metrics import Metrics
from maskline.ops.router import router as ops_router
from maskline.payments.gateway import Razorpay
from maskline.payments.router import router as payments_router
from maskline.portal.router import install_portal
from maskline.recordings.router import router as recordings_router
from maskline.recordings.signing import UrlSigner
from maskline.recordings.storage import LocalStorage
from maskline.recordings.tasks import RecordingWorker
from maskline.retention.tasks import RetentionWorker
from maskline.runtime import Runtime
from maskline.settings import Settings
from maskline.stats.router import router as stats_router
from maskline.telephony.carrier import Carrier
from maskline.telephony.media.recorder import Spool
from maskline.telephony.sim.carrier import SimCarrier
from maskline.telephony.sip.carrier import SipCarrier
from maskline.telephony.sip.process import SipProcessCarrier
from maskline.webhooks.router import router as webhooks_router
from maskline.webhooks.ssrf import HostResolver
from maskline.webhooks.tasks import WebhookWorker

log = logging.getLogger("maskline.app")

Announce = Callable[[SandboxCreated], None]


def _error_response(request: Request, error: AppError) -> JSONResponse:
    body = envelope(error, request_id=getattr(request.state, "request_id", None))
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "The request is not valid."
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
    field = ".".join(location) or "request"
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    return f"{field}: {first.get('msg', 'is not valid')}."


def install_error_handlers(app: FastAPI) -> None:
    async def on_app_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        return _error_response(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _error_response(request, InvalidRequest(_validation_message(exc)))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return _error_response(request, NotFound("No such resource: check the path."))
        if exc.status_code == 405:
            return _error_response(
                request,
                MethodNotAllowed(
                    f"{request.method} is not allowed on this resource.",
                    headers={**(exc.headers or {}), "Allow": allowed_methods(request)},
                ),
            )
        error = AppError(str(exc.detail))
        error.status_code = exc.status_code
        error.code = "invalid_request" if exc.status_code < 500 else "internal_error"
        return _error_response(request, error)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        request_id = getattr(request.state, "request_id", None)
        # This response is made outside the middleware stack, so it names the request itself.
        return _error_response(
            request,
            InternalError(
                f"An internal error occurred (request id {request_id}).",
                headers={"X-Request-Id": str(request_id)},
            ),
        )

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def _print_sandbox(created: SandboxCreated, public_url: str) -> None:
    # The one time the sandbox key is ever shown.
    print(
        "\nmaskline sandbox is ready. Your API key (shown once, keep it):\n\n"
        f"  {created.api_key}\n\nTry it:\n\n"
        f'  curl -H "Authorization: Bearer {created.api_key}" {public_url}/v1/masking/billing\n',
        flush=True,
    )
    if created.sign_in_link:
        print(
            "Open the portal (a one-time sign-in link, for 24 hours):\n\n"
            f"  {created.sign_in_link}\n",
            flush=True,
        )


ROLES = ("all", "api", "engine", "worker")
CSRF_DIGEST_PURPOSE = "maskline/portal-csrf/v1"
SANDBOX_OWNER_EMAIL = "owner@sandbox.localhost"


def _carriers(settings: Settings, clock: Clock, db: Database) -> dict[str, Carrier]:
    """The sim always (sandbox organisations' calls run on it); the sip carrier when set."""
    carriers: dict[str, Carrier] = {
        "sim": SimCarrier(clock, ring_sec=settings.sim_ring_sec, talk_sec=settings.sim_talk_sec)
    }
    if settings.carrier == "sip":
        try:
            sip = SipProcessCarrier if settings.sip_process else SipCarrier
            carriers["sip"] = sip(settings, clock, is_pool_number=PoolLookup(db))
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    return carriers


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    announce: Announce | None = None,
    role: str = "all",
) -> FastAPI:
    """Build the API. Connections, the carrier and background tasks start in the lifespan."""
    if role not in ROLES:
        raise ConfigurationError(f"role must be one of {', '.join(ROLES)}")
    # This app's own registry, from the first request it answers to its last.
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything started is stopped, in reverse order, also when a later part fails
        # to start (a SIP port in use must not leave the workers running).
        async with contextlib.AsyncExitStack() as started:
            db = Database(settings.database_url)
            started.push_async_callback(db.dispose)
            runtime_clock = clock or SystemClock()
            limiter = RateLimiter(settings.redis_url, clock=runtime_clock)
            started.callback(limiter.close)
            data_dir = Path(settings.data_dir)
            spool = Spool(data_dir / "spool")
            secret_key = resolve_secret_key(settings)
            pair_digest = KeyedDigest(secret_key, PAIR_DIGEST_PURPOSE)
            runtime = Runtime(
                settings=settings,
                db=db,
                clock=runtime_clock,
                box=SecretBox(secret_key),
                limiter=limiter,
                principals=PrincipalCache(runtime_clock),
                signer=UrlSigner(secret_key),
                storage=LocalStorage(data_dir / "recordings"),
                spool=spool,
                wakeups=Wakeups(settings.database_url),
                pair_digest=pair_digest,
                metrics=metrics,
                recorded_calls=RecordedCalls(public_url=settings.public_url),
                mailer=Mailer(settings),
                csrf_digest=KeyedDigest(secret_key, CSRF_DIGEST_PURPOSE),
                razorpay=(
                    Razorpay(settings)
                    if settings.razorpay_key_id and settings.razorpay_key_secret
                    else None
                ),
            )
            # Stopped last: an engine in its shutdown grace still hears of hang-up
            # requests and tells the other processes about the calls it ends.
            started.push_async_callback(runtime.wakeups.stop)
            runtime.wakeups.on(Topic.EVENTS, runtime.call_events.fire)
            if db.is_sqlite:
                await upgrade(db)
            await passwords.prepare()
            if settings.carrier == "sim" or settings.sandbox:

                async def bootstrap(session: AsyncSession) -> SandboxCreated | None:
                    now = runtime.clock.now()
                    made = await bootstrap_sandbox(session, box=runtime.box, now=now)
                    if made is None:
                        return None
                    # The sandbox's owner in the portal, signed in by a one-time link.
                    owner = await accounts.create_user(
                        session,
                        email=SANDBOX_OWNER_EMAIL,
                        name="Sandbox owner",
                        password_hash=None,
                        now=now,
                        verified=True,
                    )
                    await accounts.add_member(session, made.org_id, owner, "owner", now=now)
                    raw = await accounts.issue_link(session, owner.id, "sign_in", now=now)
                    link = accounts.link_url(settings.public_url, "sign_in", raw)
                    return dataclasses.replace(made, sign_in_link=link)

                created = await db.transaction(bootstrap)
                if created is not None:
                    (announce or (lambda c: _print_sandbox(c, settings.public_url)))(created)
            if role in ("all", "worker"):
                runtime.worker = WebhookWorker(
                    db=db,
                    clock=runtime.clock,
                    settings=settings,
                    box=runtime.box,
                    on_attempt=runtime.metrics.observe_webhook_attempt,
                    resolver=HostResolver(
                        now=lambda: runtime.clock.now().timestamp(),
                        nameservers=settings.webhook_nameservers,
                    ),
                )
                await runtime.worker.start()
                started.push_async_callback(runtime.worker.stop)
                runtime.wakeups.on(Topic.EVENTS, runtime.worker.wake)
                runtime.recorder = RecordingWorker(
                    db=db,
                    clock=runtime.clock,
                    settings=settings,
                    spool=spool,
                    storage=runtime.storage,
                    calls=runtime.recorded_calls,
                    on_events=runtime.wake_worker,
                )
                await runtime.recorder.start()
                started.push_async_callback(runtime.recorder.stop)
                runtime.wakeups.on(Topic.EVENTS, runtime.recorder.wake)
                runtime.retention = RetentionWorker(
                    db=db,
                    clock=runtime.clock,
                    settings=settings,
                    storage=runtime.storage,
                    calls=runtime.recorded_calls,
                    pair_digest=pair_digest,
                )
                await runtime.retention.start()
                started.push_async_callback(runtime.retention.stop)
            if role in ("all", "engine"):
                runtime.engine = CallEngine(
                    db=db,
                    clock=runtime.clock,
                    settings=settings,
                    carriers=_carriers(settings, runtime.clock, db),
                    spool=spool,
                    on_events=runtime.wake_worker,
                    on_connect=runtime.metrics.connect_latency.observe,
                )
                await runtime.engine.start()
                started.push_async_callback(runtime.engine.stop)
                runtime.wakeups.on(Topic.CALLS, runtime.engine.wake)
                runtime.wakeups.on(Topic.HANGUPS, runtime.engine.hangups_asked)
            await runtime.wakeups.start()
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="maskline",
        version=__version__,
        description="Number-masking voice API for India, wire-compatible with the Edesy "
        "Number Masking API.",
        lifespan=lifespan,
        # No OpenTelemetry here: FastAPI's own would otherwise ask on every request
        # whether a provider was configured (its environment, its globals).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    # Added first, so it runs inside the request context: a 413 has a request id too.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestContextMiddleware, observe=metrics.observe_request)
    if settings.trusted_proxy_list:
        # Outermost: everything inside (the failed-auth limit, logs) sees the real client.
        # From any other address X-Forwarded-For is ignored (SPEC §10).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)
    app.include_router(ops_router)
    app.include_router(calls_router)
    app.include_router(recordings_router)
    app.include_router(stats_router)
    app.include_router(billing_router)
    app.include_router(webhooks_router)
    app.include_router(payments_router)
    install_portal(app)
    # The documentation site; /docs itself stays FastAPI's interactive OpenAPI page.
    app.mount(GUIDE_PATH, GuideSite(settings.docs_site_dir), name="guide")
    install_openapi(app)
    return app
