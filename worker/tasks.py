"""Celery tasks: thin wrappers that take ids and call the delivery rules."""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from uuid import UUID

import kombu.exceptions
from celery import current_app, shared_task, signals
from celery.exceptions import Retry

from messaging.delivery import outcomes, rules
from messaging.domain.message import Claim
from messaging.errors import AttemptFailed, BrokerUnavailable, DependencyUnavailable, MessageFailed
from messaging.logs import fields
from messaging.ops import callbacks, pruning, receipt_sweep
from messaging.runtime import Runtime
from messaging.task_names import (
    BATCH_TASK,
    CALLBACK_DISPATCH_TASK,
    CALLBACK_QUEUE,
    CALLBACK_TASK,
    PRUNE_TASK,
    RECEIPT_SWEEP_TASK,
    SEND_TASK,
)
from worker.factory import settings_of

log = logging.getLogger(__name__)

_runtime: Runtime | None = None
_runtime_pid: int | None = None
_runtime_lock = threading.Lock()
# Publish commands buffered before a flush: a batch of claims goes out in a few pipelines.
PUBLISH_BATCH_SIZE = 500


def runtime(concurrency: int | None = None) -> Runtime:
    """This process's connections, opened on first use after a fork (never inherited from a parent).

    `concurrency` sizes the pools when they are opened; by default, the configured one.
    """
    global _runtime, _runtime_pid
    if _runtime is None or _runtime_pid != os.getpid():
        with _runtime_lock:
            if _runtime is None or _runtime_pid != os.getpid():
                app = current_app._get_current_object()  # the app itself, not its proxy
                _runtime = Runtime.open(
                    settings_of(app),
                    concurrency=concurrency or int(app.conf.worker_concurrency or 4),
                    name=f"worker-{os.getpid()}",
                )
                _runtime_pid = os.getpid()
    return _runtime


@signals.worker_init.connect
def _open_worker_runtime(sender: object = None, **_: object) -> None:
    # The worker's own thread count: `--concurrency` on the command line does not reach
    # app.conf, and the webhook's pool needs a connection for every thread that sends.
    concurrency = getattr(sender, "concurrency", None)
    runtime(concurrency if isinstance(concurrency, int) else None)


@signals.worker_process_init.connect
def _open_runtime(**_: object) -> None:
    runtime()


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _close_runtime(**_: object) -> None:
    global _runtime
    with _runtime_lock:
        if _runtime is not None and _runtime_pid == os.getpid():
            _runtime.close()
        _runtime = None


@shared_task(name=BATCH_TASK, ignore_result=True)
def run_batch() -> int:
    """Claim due messages and enqueue one send each; returns how many were claimed."""
    try:
        return len(rules.run_batch(runtime().ports, enqueue_sends).claimed)
    except DependencyUnavailable as error:
        if rules.outage_log.allow(f"batch:{error.dependency}"):
            log.warning("event=batch_skipped %s", fields(dependency=error.dependency, reason=error))
        return 0


# A message that failed for good ends its task in FAILURE (Flower counts it, with the reason); an
# expected error, so Celery logs it without a traceback: `event=delivery` has said it already.
@shared_task(name=SEND_TASK, bind=True, ignore_result=True, throws=(MessageFailed,))
def send_message(self, message_id: str) -> str:
    """Send one claimed message; this task's id is the claim's token."""
    try:
        report = rules.deliver(runtime().ports, UUID(message_id), UUID(self.request.id))
    except DependencyUnavailable as error:
        # The claim stays; it returns to pending after CLAIM_TIMEOUT_SECONDS.
        if rules.outage_log.allow(f"send:{error.dependency}"):
            log.warning("event=delivery_deferred %s", fields(message_id=message_id, dependency=error.dependency, reason=error))
        return "deferred"
    if report.outcome is outcomes.Outcome.FAILED:
        raise MessageFailed(f"Message {message_id} failed for good: {report.error}")
    if report.outcome is outcomes.Outcome.RETRY_LATER:
        # The task ends in RETRY, saying why and when. A later batch makes the next attempt with
        # a new task: Retry is raised, not `self.retry()`, so nothing is re-published to the broker.
        next_attempt = f"next attempt at {report.retry_at:%Y-%m-%dT%H:%M:%SZ}"
        raise Retry(exc=AttemptFailed(f"{report.error}; {next_attempt}"), when=report.retry_at)
    return report.outcome.value


@shared_task(name=PRUNE_TASK, ignore_result=True)
def prune() -> int:
    """Retention: messages past MESSAGE_RETENTION_DAYS with their attempts, then attempts past
    ATTEMPT_RETENTION_DAYS, in small batches; returns how many rows went."""
    try:
        pruned = pruning.prune(runtime().records, runtime().settings)
    except DependencyUnavailable as error:
        log.warning("event=prune_skipped %s", fields(dependency=error.dependency, reason=error))
        return 0
    runtime().counters.pruned(pruned.messages, pruned.attempts)
    log.info("event=pruned %s", fields(messages=pruned.messages, attempts=pruned.attempts))
    return pruned.messages + pruned.attempts


@shared_task(name=RECEIPT_SWEEP_TASK, ignore_result=True)
def sweep_receipts() -> int:
    """Expire sent messages with no final receipt in time, drop receipts no message claimed; how many rows changed."""
    try:
        swept = receipt_sweep.sweep(runtime().receipts, runtime().settings)
    except DependencyUnavailable as error:
        if rules.outage_log.allow(f"receipts:{error.dependency}"):
            log.warning("event=receipt_sweep_skipped %s", fields(dependency=error.dependency, reason=error))
        return 0
    if swept.expired or swept.orphans:
        runtime().counters.receipts_swept(swept.expired, swept.orphans)
        log.info("event=receipts_swept %s", fields(expired=swept.expired, orphans=swept.orphans))
    return swept.expired + swept.orphans


@shared_task(name=CALLBACK_DISPATCH_TASK, ignore_result=True)
def dispatch_callbacks() -> int:
    """Hand the status callback events due now to tasks in batches; how many batches."""
    try:
        return _dispatch_callbacks()
    except DependencyUnavailable as error:
        if rules.outage_log.allow(f"callbacks:{error.dependency}"):
            log.warning("event=callbacks_skipped %s", fields(dependency=error.dependency, reason=error))
        return 0


# The task's id is its batch's dispatch token: a task whose lease ended (its batch handed to another) POSTs nothing.
@shared_task(name=CALLBACK_TASK, bind=True, ignore_result=True)
def send_callbacks(self, token: str) -> str:
    """POST one batch of status callback events, record the outcomes, and hand out the next batches due."""
    rt = runtime()
    try:
        results = callbacks.send_batch(
            UUID(token),
            slots=rt.callback_slots,
            events=rt.events,
            client=rt.callback_client,
            settings=rt.settings,
        )
        if results:
            rt.counters.callbacks(results)
            log.info("event=callbacks %s", fields(batch=token, **results))
            # This batch's place in flight is free: the next full batch goes now, not at the next sweep, unless
            # sends queue up (not after a batch given back for want of a slot: that would only hand it round again).
            _dispatch_callbacks(full_only=True)
    except DependencyUnavailable as error:
        # The batch stays handed out; it is due again when its lease ends.
        if rules.outage_log.allow(f"callback:{error.dependency}"):
            log.warning("event=callbacks_deferred %s", fields(batch=token, dependency=error.dependency, reason=error))
        return "deferred"
    return ", ".join(f"{result}={count}" for result, count in sorted(results.items())) or "skipped"


def _dispatch_callbacks(*, full_only: bool = False) -> int:
    settings = runtime().settings
    tokens = callbacks.dispatch(runtime().events, settings, full_only=full_only)
    if tokens:
        _publish(CALLBACK_TASK, [(str(token), str(token)) for token in tokens], CALLBACK_QUEUE,
                 callbacks.lease_seconds(settings))  # fmt: skip
    return len(tokens)


def enqueue_sends(claims: list[Claim]) -> None:
    """Publish one send task per claim over a single producer connection, in one round trip."""
    tasks = [(str(claim.message_id), str(claim.token)) for claim in claims]
    _publish(SEND_TASK, tasks, current_app.conf.task_default_queue, runtime().settings.claim_timeout_seconds)


def _publish(name: str, tasks: list[tuple[str, str]], queue: str, expires_in_seconds: float) -> None:
    """Publish task `name` once per (argument, task id) over a single producer connection, in one round trip."""
    app = current_app
    expires = app.now() + timedelta(seconds=expires_in_seconds)
    try:
        with app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH_SIZE):
            # On Redis the batch is one pipeline (a client and a round trip per publish cost
            # as much CPU as a delivery); other transports publish one by one as before.
            # The queue is declared once per batch, not per task (`declare=()`), and the
            # arguments' repr is given, not worked out: less than half the CPU per task
            # (bench/PROFILE.md).
            producer.maybe_declare(app.amqp.queues[queue])
            for argument, task_id in tasks:
                args = (argument,)
                app.send_task(
                    name,
                    args,
                    task_id=task_id,
                    expires=expires,
                    ignore_result=True,
                    producer=producer,
                    declare=(),
                    argsrepr=repr(args),
                    kwargsrepr="{}",
                )
    except (kombu.exceptions.OperationalError, kombu.exceptions.BatchPublishError) as error:
        # A batch that failed part-way may have published some tasks: the caller releases
        # every claim, and a task that did get through then finds its claim gone.
        raise BrokerUnavailable(str(error)) from error
