"""Prometheus metrics (SPEC §11), one registry per running app.

Two kinds of figures. What lives in the database (calls by status and cause,
live calls, wallet holds, webhook deliveries by status) is read when
``/metrics`` is scraped, so every process reports the same, right, numbers
however many there are. What only this process sees (connect latency, HTTP
requests, webhook attempts and their lag, inbound INVITEs counted by its
carriers) is kept in this process's registry; Prometheus sums it over processes.
docs/operations.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from maskline.telephony.carrier import Carrier

CONNECT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
DELIVERY_STATUSES = ("pending", "succeeded", "failed", "paused")
# A delivery's status after an attempt → the attempt's outcome.
ATTEMPT_OUTCOMES = {"succeeded": "succeeded", "pending": "retry", "failed": "failed"}


class Metrics:
    """This process's own metrics, in a registry of its own (never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connect_latency = Histogram(
            "maskline_connect_latency_seconds",
            "Time from Party A answering to Party B's leg being dialled, in this engine.",
            buckets=CONNECT_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "maskline_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "maskline_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ("method", "route"),
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "maskline_webhook_attempts",
            "Webhook delivery attempts made by this worker, by outcome.",
            ("outcome",),
            registry=self.registry,
        )
        self.webhook_lag = Histogram(
            "maskline_webhook_delivery_lag_seconds",
            "Time from a delivery attempt falling due to this worker sending it.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def observe_webhook_attempt(self, lag_seconds: float, status: str) -> None:
        """One attempt made ``lag_seconds`` after it was due; ``status`` is the delivery's
        status once its outcome was recorded."""
        self.webhook_lag.observe(max(lag_seconds, 0.0))
        self.webhook_attempts.labels(ATTEMPT_OUTCOMES.get(status, status)).inc()

    def exposition(
        self,
        figures: DatabaseFigures,
        carriers: Iterable[Carrier] | None = None,
        writer: WriterFigures | None = None,
    ) -> bytes:
        """The text format: this process's metrics, ``figures``, the carriers' counts
        (``carriers`` is None in a process that runs no call engine) and its writer's."""
        return generate_latest(_Scrape(self.registry, figures, carriers, writer))


@dataclass(frozen=True)
class WriterFigures:
    """This process's group-commit writer since it started (``kit/writer.py``): its
    committed batches, the units they committed, and the batches run again with a
    savepoint per unit after one of their units failed."""

    batches: int = 0
    units: int = 0
    reruns: int = 0


@dataclass(frozen=True)
class DatabaseFigures:
    """What the database holds at the moment of a scrape."""

    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    live_calls: int = 0
    holds: int = 0
    holds_paise: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)
    oldest_due_seconds: float = 0.0


class _Scrape:
    """A collector for one scrape: the process registry plus the figures read for it."""

    def __init__(
        self,
        registry: CollectorRegistry,
        figures: DatabaseFigures,
        carriers: Iterable[Carrier] | None,
        writer: WriterFigures | None,
    ) -> None:
        self._registry = registry
        self._figures = figures
        self._carriers = None if carriers is None else list(carriers)
        self._writer = writer or WriterFigures()

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()
        figures = self._figures
        calls = GaugeMetricFamily(
            "maskline_calls",
            "Calls stored, by status and hangup cause (empty while live).",
            labels=("status", "hangup_cause"),
        )
        for (status, cause), count in sorted(figures.calls.items()):
            calls.add_metric((status, cause), count)
        yield calls
        yield GaugeMetricFamily(
            "maskline_live_calls",
            "Calls not yet ended (initiated, ringing, answered or in-progress).",
            value=figures.live_calls,
        )
        yield GaugeMetricFamily(
            "maskline_wallet_holds",
            "Live calls holding money in their organisation's wallet.",
            value=figures.holds,
        )
        yield GaugeMetricFamily(
            "maskline_wallet_holds_paise",
            "Money reserved in all wallets for live calls, in paise.",
            value=figures.holds_paise,
        )
        deliveries = GaugeMetricFamily(
            "maskline_webhook_deliveries",
            "Webhook deliveries stored, by status.",
            labels=("status",),
        )
        for status in sorted({*DELIVERY_STATUSES, *figures.deliveries}):
            deliveries.add_metric((status,), figures.deliveries.get(status, 0))
        yield deliveries
        yield GaugeMetricFamily(
            "maskline_webhook_oldest_due_seconds",
            "How long the longest-waiting due delivery has been waiting (0 when none is).",
            value=figures.oldest_due_seconds,
        )
        writer = self._writer
        yield CounterMetricFamily(
            "maskline_writer_batches",
            "Transactions committed by this process's group-commit writer.",
            value=writer.batches,
        )
        yield CounterMetricFamily(
            "maskline_writer_units",
            "Units of work committed by this process's writer (over its batches: the "
            "mean batch size).",
            value=writer.units,
        )
        yield CounterMetricFamily(
            "maskline_writer_reruns",
            "Batches this process's writer ran again with a savepoint per unit, after "
            "one of their units failed.",
            value=writer.reruns,
        )
        if self._carriers is not None:
            yield CounterMetricFamily(
                "maskline_inbound_calls",
                "INVITEs received for pool numbers by this engine's carriers.",
                value=sum(carrier.inbound_calls for carrier in self._carriers),
            )
