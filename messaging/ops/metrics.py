"""The Prometheus exposition of /metrics: counters every worker adds to in Redis
(messaging/redis/counters.py), the shared counts by status, the breaker, and which dependency answers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

import redis
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString
from psycopg_pool import ConnectionPool

from messaging.errors import DependencyUnavailable
from messaging.postgres import pool as postgres_pool
from messaging.postgres.events import EventRecords
from messaging.redis import breaker, keys
from messaging.domain.receipts import ProviderStatus
from messaging.redis.counters import EXPIRED, LATENCY_BUCKETS, ORPHANS, RECEIPT_DELAY_BUCKETS
from messaging.redis.shared_counts import MAX_AGE_SECONDS, RECOUNT_COST_FACTOR, StatusCounts
from messaging.settings import Settings


class _Collector:
    """Reads Redis and the shared counts at scrape time; asks PostgreSQL only `SELECT 1` and, while status
    callbacks are on, for the first entry of an index (how late they are)."""

    def __init__(self, pool: ConnectionPool, client: redis.Redis, counts: StatusCounts, settings: Settings) -> None:
        self.pool = pool
        self.client = client
        self.counts = counts
        self.settings = settings

    def collect(self) -> Iterable:
        up = GaugeMetricFamily("messaging_dependency_up", "1 when the dependency answered this scrape.", labels=["dependency"])
        try:
            postgres_pool.ping(self.pool)
            messages = GaugeMetricFamily(
                "messaging_messages", f"Messages by delivery status, counted at most {MAX_AGE_SECONDS:g} s ago "
                f"({2 * RECOUNT_COST_FACTOR}x the count's time if longer).", labels=["status"]
            )
            for status, total in self.counts.get().items():
                messages.add_metric([status.label], total)
            yield messages
            if self.settings.status_callbacks:
                yield GaugeMetricFamily(
                    "messaging_callbacks_overdue_seconds",
                    "How long the status callback waiting longest past its due time has waited (0 when none).",
                    value=EventRecords(self.pool).overdue_seconds(),
                )
            up.add_metric(["postgresql"], 1)
        except DependencyUnavailable:
            up.add_metric(["postgresql"], 0)
        try:
            # Every Redis key the scrape reports, in one round trip.
            pipe = self.client.pipeline(transaction=False)
            for key in (keys.METRICS_DELIVERIES, keys.METRICS_LATENCY, keys.METRICS_BATCHES, keys.METRICS_PRUNED,
                        keys.FLOW_BREAKER, keys.FLOW_PAUSE, keys.METRICS_BREAKER,
                        keys.METRICS_RECEIPTS, keys.METRICS_RECEIPT_DELAY, keys.METRICS_FAILOVERS,
                        keys.METRICS_CALLBACKS):  # fmt: skip
                pipe.hgetall(key)
            deliveries, latency, batches, pruned, state, pause, transitions, receipts, delay, failovers, callbacks = pipe.execute()
            yield from self._redis_counters(deliveries, latency, batches)
            yield _pruned(pruned)
            yield from _receipts(receipts, delay)
            yield _failovers(failovers)
            yield _callbacks(callbacks)
            yield from self._flow_control(breaker.read_status(state, pause), transitions)
            up.add_metric(["redis"], 1)
        except (redis.RedisError, DependencyUnavailable):
            up.add_metric(["redis"], 0)
        yield up

    def _redis_counters(self, deliveries: dict[str, str], latency: dict[str, str], batches: dict[str, str]) -> Iterable:
        by_outcome = CounterMetricFamily(
            "messaging_deliveries", "Send tasks by outcome (sent, retry_later, failed, ...).", labels=["outcome"]
        )
        for outcome, count in sorted(deliveries.items()):
            by_outcome.add_metric([outcome], float(count))
        yield by_outcome
        yield _histogram(
            "messaging_webhook_latency_seconds", "Time for one webhook POST, answered or not.", LATENCY_BUCKETS, latency
        )
        yield CounterMetricFamily("messaging_batches", "Batches run while sending was enabled.", value=float(batches.get("runs", 0)))
        yield CounterMetricFamily("messaging_batch_claimed", "Messages claimed by batches.", value=float(batches.get("claimed", 0)))
        yield CounterMetricFamily(
            "messaging_claims_recovered", "Stale claims returned to pending.", value=float(batches.get("recovered", 0))
        )

    def _flow_control(self, status: breaker.BreakerStatus, transitions: dict[str, str]) -> Iterable:
        """The breaker and the rate limit, as every worker sees them."""
        state = GaugeMetricFamily(
            "messaging_breaker_state", "1 for the circuit breaker's current state.", labels=["state"]
        )
        for name in ("closed", "open", "half_open"):
            state.add_metric([name], 1 if status.state == name else 0)
        yield state
        moves = CounterMetricFamily(
            "messaging_breaker_transitions", "Circuit breaker state changes, by the state entered.", labels=["to"]
        )
        for name, field in (("open", "opened"), ("half_open", "half_open"), ("closed", "closed")):
            moves.add_metric([name], float(transitions.get(field, 0)))
        yield moves
        yield CounterMetricFamily(
            "messaging_breaker_probes", "Probe deliveries let through while half-open.", value=float(transitions.get("probes", 0))
        )
        paused = (status.paused_until - datetime.now(timezone.utc)).total_seconds() if status.paused_until else 0.0
        yield GaugeMetricFamily(
            "messaging_provider_paused_seconds", "Seconds left of a provider's 429 Retry-After pause.", value=max(0.0, paused)
        )
        yield GaugeMetricFamily(
            "messaging_rate_limit_per_second", "Deliveries per second across all workers; 0: no limit.",
            value=self.settings.rate_limit_per_second,
        )
        yield GaugeMetricFamily(
            "messaging_rate_limit_burst", "Deliveries that may go at once.", value=self.settings.rate_limit_burst
        )


def _pruned(raw: dict[str, str]) -> CounterMetricFamily:
    return _by_label("messaging_pruned", "Rows deleted by retention (MESSAGE_RETENTION_DAYS, ATTEMPT_RETENTION_DAYS).",
                     "kind", ("messages", "attempts"), raw)  # fmt: skip


def _failovers(raw: dict[str, str]) -> CounterMetricFamily:
    return _by_label("messaging_failovers", "Times a process found its PostgreSQL primary or Redis master replaced.",
                     "dependency", ("postgresql", "redis"), raw)  # fmt: skip


def _callbacks(raw: dict[str, str]) -> CounterMetricFamily:
    return _by_label(
        "messaging_callbacks",
        "Status callback POSTs by result: delivered (2xx); retrying (failed, tried again later); failed (no more).",
        "result",
        ("delivered", "retrying", "failed"),
        raw,
    )


def _by_label(name: str, documentation: str, label: str, values: tuple[str, ...], raw: dict[str, str]) -> CounterMetricFamily:
    """A counter with one sample per value of `label`, from a Redis hash of counts by value (0 when absent)."""
    counter = CounterMetricFamily(name, documentation, labels=[label])
    for value in values:
        counter.add_metric([value], float(raw.get(value, 0)))
    return counter


def _receipts(counts: dict[str, str], delay: dict[str, str]) -> Iterable:
    """Delivery receipts by the provider's status (and the sweep's `expired`), orphans dropped, and their delay."""
    yield _by_label(
        "messaging_receipts",
        "Delivery receipts taken, by the provider's status; `expired`: sent messages the sweep expired.",
        "status",
        (*(status.value for status in ProviderStatus), EXPIRED),
        counts,
    )
    yield CounterMetricFamily(
        "messaging_receipt_orphans",
        "Receipts whose messageId no message had within RECEIPT_ORPHAN_SECONDS: dropped.",
        value=float(counts.get(ORPHANS, 0)),
    )
    yield _histogram(
        "messaging_receipt_delay_seconds",
        "Time from a message's sent_at to its delivery receipt (0 when the receipt came first).",
        RECEIPT_DELAY_BUCKETS,
        delay,
    )


def _histogram(name: str, documentation: str, bounds: tuple[float, ...], raw: dict[str, str]) -> HistogramMetricFamily:
    """Cumulative buckets from the per-bucket counts in Redis (fields named `f"{bound:g}"`)."""
    cumulative, buckets = 0, []
    for bound in bounds + (float("inf"),):
        cumulative += int(raw.get("+Inf" if bound == float("inf") else f"{bound:g}", 0))
        # `le` spelled as prometheus_client spells it for its own histograms: "1.0", "+Inf".
        buckets.append((floatToGoString(bound), cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=float(raw.get("sum", 0)))


def render(
    pool: ConnectionPool, client: redis.Redis, counts: StatusCounts, settings: Settings, accept: str | None = None
) -> tuple[bytes, str]:
    """The exposition for this service and its content type: OpenMetrics when the scraper's
    `Accept` header asks for it (as Prometheus does), else the classic Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(pool, client, counts, settings))
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
