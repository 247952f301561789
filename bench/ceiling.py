"""The ceiling: how fast Celery alone drains tasks that take one id and do nothing, with the service's worker shape.

With one task per message no design beats both the floor (the same work without a
queue) and this ceiling (the queue without the work): together they bound the system at
1 / (1/floor + 1/ceiling), the limit `make bench` holds the system to.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from bench import data
from bench.noop import NOOP_TASK, create_noop_app
from bench.processes import (
    Stack,
    cpu_by_role,
    cpu_spent,
    environment,
    wait_for_log,
)
from messaging.settings import Settings
from harness.stack import BIN
from worker.tasks import PUBLISH_BATCH_SIZE

POLL_SECONDS = 0.1
PUBLISH_CHUNK = 1000  # tasks per publish, as one beat batch publishes its claims


@dataclass(frozen=True)
class Run:
    tasks: int
    seconds: float
    roles: dict[str, float]  # CPU seconds by kind of process (bench.processes.ROLES)

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds


def drain(
    broker_url: str,
    *,
    count: int,
    log_dir: Path,
    workers: int,
    worker_options: tuple[str, ...] = (),
    timeout: float = 300,
) -> Run:
    """Start `workers` no-op workers, publish `count` tasks as a batch does, time until the workers ran them all."""
    env = environment(
        # The settings the worker needs to build its app; nothing here connects to the database or the webhook.
        DATABASE_URL="postgresql://postgres@127.0.0.1:5432/unused",
        REDIS_URL=broker_url if broker_url.startswith("redis") else "redis://127.0.0.1:6379/0",
        CELERY_BROKER_URL=broker_url,
        WEBHOOK_URL="http://127.0.0.1:9/unused",
        LOG_LEVEL="INFO",
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    data.purge_broker(broker_url)
    stack = Stack(env, log_dir)
    names = [f"noop{n}" for n in range(1, workers + 1)]
    app: Celery | None = None
    try:
        started_workers = [
            stack.start(name, str(BIN / "celery"), "-A", "bench.noop", "worker", "--loglevel=INFO",
                        f"--hostname={name}@%h", "--without-mingle", "--without-gossip", *worker_options)
            for name in names
        ]
        for worker in started_workers:
            wait_for_log(worker, " ready.")
        app = create_noop_app(Settings.from_env(env))  # the publishing side, as the batch task's worker
        roles = cpu_by_role()
        started = time.perf_counter()
        _publish(app, count)
        deadline = started + timeout
        while (ran := stack.tasks_run(NOOP_TASK, *names)) < count:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"ceiling: {ran}/{count} tasks ran after {timeout}s")
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        return Run(count, seconds, cpu_spent(roles))
    finally:
        if app is not None:
            app.close()
        stack.stop()


def _publish(app: Celery, count: int) -> None:
    """The tasks, published the way `worker.tasks.enqueue_sends` publishes a batch's claims."""
    queue = app.amqp.queues[app.conf.task_default_queue]
    for first in range(0, count, PUBLISH_CHUNK):
        with app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH_SIZE):
            producer.maybe_declare(queue)
            for _ in range(first, min(count, first + PUBLISH_CHUNK)):
                args = (str(uuid.uuid4()),)
                app.send_task(NOOP_TASK, args, task_id=str(uuid.uuid4()), ignore_result=True, producer=producer,
                              declare=(), argsrepr=repr(args), kwargsrepr="{}")

