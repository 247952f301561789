"""The system: pending messages drained by a real `celery worker` and `celery beat` into the receiver."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from celery import Celery

from bench import data
from bench.processes import (
    Stack,
    cpu_by_role,
    cpu_spent,
    environment,
    wait_for_log,
)
from messaging.redis import keys
from messaging.task_names import BATCH_TASK

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Run:
    sent: int
    seconds: float
    roles: dict[str, float]  # CPU seconds by kind of process: workers, beat, PostgreSQL, Redis, the receiver...
    # With status callbacks on: seconds from the start until every message's callback was delivered.
    callbacks_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


def start_sending(switch: redis.Redis, app: Celery) -> None:
    """What `POST /messaging/start` does: the flag on, then one batch at once rather than at the next tick."""
    switch.set(keys.ENABLED, "1")
    app.send_task(BATCH_TASK)


def drain(
    where: data.Place,
    webhook_url: str,
    *,
    count: int,
    log_dir: Path,
    interval: float,
    batch_size: int,
    worker_options: tuple[str, ...] = (),
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    broker_url: str | None = None,
    timeout: float = 300,
) -> Run:
    """Start worker and beat (sending off), switch sending on, and time until `count` are sent; with status
    callbacks on, also until each message's callback is delivered (CPU counted to the last send only)."""
    env = environment(
        DATABASE_URL=where.database_url,
        REDIS_URL=where.redis_url,
        WEBHOOK_URL=webhook_url,
        SEND_INTERVAL_SECONDS=interval,
        SEND_BATCH_SIZE=batch_size,
        AUTO_START="false",
        CLAIM_TIMEOUT_SECONDS=600,
        LOG_LEVEL="INFO",
        CELERY_BROKER_URL=broker_url or where.redis_url,
    )
    env.update(extra_env or {})
    data.purge_broker(env["CELERY_BROKER_URL"])
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(env, log_dir)
    switch = redis.Redis.from_url(where.redis_url)
    api = Celery(broker=env["CELERY_BROKER_URL"])  # the API's side of the broker, built before the clock starts
    try:
        started_workers = [stack.worker(f"worker{n}", *worker_options) for n in range(1, workers + 1)]
        for worker in started_workers:
            wait_for_log(worker, " ready.")
        stack.beat()
        time.sleep(1.0)  # beat up, its first batches found sending off
        with data.connect(where.database_url) as conn:
            roles = cpu_by_role()
            started = time.perf_counter()
            start_sending(switch, api)
            sent = _wait_for_count(lambda: data.count_sent(conn), count, timeout, started_workers,
                                   what=lambda: f"sent; counts {data.counts(conn)}")  # fmt: skip
            seconds = time.perf_counter() - started
            roles = cpu_spent(roles)
            callbacks_seconds = None
            if env.get("STATUS_CALLBACKS") == "on":
                _wait_for_count(lambda: data.count_callbacks_delivered(conn), count, timeout, started_workers,
                                what=lambda: "callbacks delivered")  # fmt: skip
                callbacks_seconds = time.perf_counter() - started
        return Run(sent, seconds, roles, callbacks_seconds)
    finally:
        switch.set(keys.ENABLED, "0")
        switch.close()
        api.close()
        stack.stop()


def _wait_for_count(
    count_now: Callable[[], int], count: int, timeout: float, workers: list, *, what: Callable[[], str]
) -> int:
    """Poll `count_now()` until it reaches `count`; raise when `timeout` passes first or a worker exits."""
    deadline = time.perf_counter() + timeout
    while (reached := count_now()) < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"system: {reached}/{count} {what()} after {timeout}s")
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"{worker.name} exited:\n{worker.log()[-3000:]}")
        time.sleep(POLL_SECONDS)
    return reached
