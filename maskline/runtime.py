"""What a running process holds: built once in the lifespan, passed to everything.

The composition root: it knows every domain. No domain imports it; each router
reads it through a protocol of its own (``kit.web.process_services``), and the
runtime names those protocols as its bases, so mypy checks that it provides them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from maskline.accounts.mail import Mailer
from maskline.calls.engine import CallEngine
from maskline.calls.idempotency import InFlight
from maskline.calls.router import CallsServices
from maskline.keys.auth import AuthServices
from maskline.keys.principals import PrincipalCache
from maskline.kit.clock import Clock
from maskline.kit.crypto import KeyedDigest, SecretBox
from maskline.kit.db import Database
from maskline.kit.notify import Broadcast, Topic, Wakeups
from maskline.kit.ratelimit import RateLimiter
from maskline.ops.metrics import Metrics
from maskline.ops.router import OpsServices
from maskline.payments.gateway import Razorpay
from maskline.payments.router import PaymentsServices
from maskline.portal.web import PortalServices
from maskline.recordings.calls import Calls
from maskline.recordings.router import RecordingsServices
from maskline.recordings.signing import UrlSigner
from maskline.recordings.storage import Storage
from maskline.recordings.tasks import RecordingWorker
from maskline.retention.tasks import RetentionWorker
from maskline.settings import Settings
from maskline.stats.router import StatsServices
from maskline.telephony.carrier import Carrier
from maskline.telephony.media.recorder import Spool
from maskline.webhooks.router import WebhooksServices
from maskline.webhooks.tasks import WebhookWorker


@dataclass
class Runtime(
    AuthServices,
    CallsServices,
    OpsServices,
    PaymentsServices,
    PortalServices,
    RecordingsServices,
    StatsServices,
    WebhooksServices,
):
    settings: Settings
    db: Database
    clock: Clock
    box: SecretBox
    limiter: RateLimiter
    # Keys that authenticated in this process in the last second (keys/principals.py).
    principals: PrincipalCache
    signer: UrlSigner
    storage: Storage
    spool: Spool
    # Wake-ups reach this process's loops and, on PostgreSQL, other processes' (ARCHITECTURE
    # §3); polling in the woken loops is the safety net.
    wakeups: Wakeups
    # Digests of A–B pairs in the stats rollup of deleted calls (never the numbers).
    pair_digest: KeyedDigest
    metrics: Metrics
    # The calls domain's side of recordings (recordings never import calls).
    recorded_calls: Calls
    # Portal mail (SPEC §12) and the key of the portal's CSRF tokens.
    mailer: Mailer
    csrf_digest: KeyedDigest
    # Razorpay (SPEC §13): None when its credentials are not set.
    razorpay: Razorpay | None = None
    engine: CallEngine | None = None
    worker: WebhookWorker | None = None
    recorder: RecordingWorker | None = None
    retention: RetentionWorker | None = None
    # Requests of this process placing a call under an Idempotency-Key right now.
    idempotency: InFlight = field(default_factory=InFlight)
    # Fired whenever any process commits call events (a call changed): what a request
    # waiting for a call to change (the hang-up API) waits on.
    call_events: Broadcast = field(default_factory=Broadcast)

    @property
    def carriers(self) -> Mapping[str, Carrier] | None:
        return None if self.engine is None else self.engine.carriers

    def wake_engine(self) -> None:
        """A call to claim has been committed."""
        self.wakeups.wake(Topic.CALLS)

    def wake_hangups(self) -> None:
        """A hang-up to carry out has been committed."""
        self.wakeups.wake(Topic.HANGUPS)

    def wake_worker(self) -> None:
        """Events to deliver (or a recording to encode) have been committed."""
        self.wakeups.wake(Topic.EVENTS)
