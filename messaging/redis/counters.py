"""Counters every worker adds to in Redis, whatever its host; /metrics and the audit read them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import redis

from messaging.redis import keys

log = logging.getLogger(__name__)

# A Redis failover loses the writes its old master took that no replica had, and those it took
# between the promotion and its own demotion (about a second with Sentinel's defaults). The
# counters begin again this long after a process first sees the new master, for the audit.
FAILOVER_SETTLE_SECONDS = 5

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From sent_at to the receipt: seconds for most, hours for a phone that was off, up to the 72 h timeout.
RECEIPT_DELAY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0, 86400.0, 259200.0)
ORPHANS = "orphans"
EXPIRED = "expired"


class Counters:
    """Adds to the shared counters; a metrics hiccup never stops a delivery."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def delivery(self, outcome: str, webhook_seconds: float | None, pipe: redis.client.Pipeline | None = None) -> None:
        """Count one send task; given a pipeline, only add to it (the caller sends it with its own commands)."""
        own = pipe is None
        pipe = self.client.pipeline(transaction=False) if own else pipe
        pipe.hincrby(keys.METRICS_DELIVERIES, outcome, 1)
        if webhook_seconds is not None:
            _observe(pipe, keys.METRICS_LATENCY, LATENCY_BUCKETS, webhook_seconds)
        if own:
            self._run(pipe)

    def receipt(self, status: str, since_sent_seconds: float | None) -> None:
        """Count one receipt by the provider's status, and the time from sent_at to it when known
        (0 for one that came before its message was recorded sent)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(keys.METRICS_RECEIPTS, status, 1)
        if since_sent_seconds is not None:
            _observe(pipe, keys.METRICS_RECEIPT_DELAY, RECEIPT_DELAY_BUCKETS, max(0.0, since_sent_seconds))
        self._run(pipe)

    def receipts_swept(self, expired: int, orphans: int) -> None:
        """Count the messages the sweep expired and the unmatched receipts it dropped."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(keys.METRICS_RECEIPTS, EXPIRED, expired)
        pipe.hincrby(keys.METRICS_RECEIPTS, ORPHANS, orphans)
        self._run(pipe)

    def callbacks(self, results: dict[str, int]) -> None:
        """Count a batch's status callback attempts by result (messaging/ops/callbacks.py: results)."""
        pipe = self.client.pipeline(transaction=False)
        for result, count in results.items():
            pipe.hincrby(keys.METRICS_CALLBACKS, result, count)
        self._run(pipe)

    def batch(self, claimed: int, recovered: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(keys.METRICS_BATCHES, "runs", 1)
        pipe.hincrby(keys.METRICS_BATCHES, "claimed", claimed)
        pipe.hincrby(keys.METRICS_BATCHES, "recovered", recovered)
        pipe.set(keys.METRICS_SINCE, datetime.now(timezone.utc).isoformat(), nx=True)
        self._run(pipe)

    def pruned(self, messages: int, attempts: int) -> None:
        """Count what retention deleted."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(keys.METRICS_PRUNED, "messages", messages)
        pipe.hincrby(keys.METRICS_PRUNED, "attempts", attempts)
        self._run(pipe)

    def failover(self, dependency: str) -> None:
        """Count one process finding `dependency`'s primary (PostgreSQL) or master (Redis) replaced."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(keys.METRICS_FAILOVERS, dependency, 1)
        if dependency == "redis":
            again = datetime.now(timezone.utc) + timedelta(seconds=FAILOVER_SETTLE_SECONDS)
            pipe.set(keys.METRICS_SINCE, again.isoformat())
        self._run(pipe)

    @staticmethod
    def _run(pipe: redis.client.Pipeline) -> None:
        try:
            pipe.execute()
        except redis.RedisError as error:
            log.debug("metrics not recorded: %s", error)


def _observe(pipe: redis.client.Pipeline, key: str, buckets: tuple[float, ...], value: float) -> None:
    """One observation of a histogram kept as a count per bucket (fields named `f"{bound:g}"`) and a sum."""
    bucket = next((f"{b:g}" for b in buckets if value <= b), "+Inf")
    pipe.hincrby(key, bucket, 1)
    pipe.hincrbyfloat(key, "sum", value)
