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
            bucket = next((f"{b:g}" for b in LATENCY_BUCKETS if webhook_seconds <= b), "+Inf")
            pipe.hincrby(keys.METRICS_LATENCY, bucket, 1)
            pipe.hincrbyfloat(keys.METRICS_LATENCY, "sum", webhook_seconds)
        if own:
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
