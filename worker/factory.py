"""The Celery application, built from settings: reliable acks, an I/O-bound pool, the beat schedule."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from celery import Celery
from kombu import Exchange, Queue

from messaging import timeouts
from messaging.ops.callbacks import DISPATCH_EVERY_SECONDS
from messaging.ops.pruning import PRUNE_EVERY_SECONDS
from messaging.ops.receipt_sweep import SWEEP_EVERY_SECONDS
from messaging.redis.client import sentinel_transport_options
from messaging.sentinel_urls import SENTINEL_SCHEME
from messaging.settings import Settings
from messaging.task_names import (
    BATCH_QUEUE,
    BATCH_TASK,
    CALLBACK_DISPATCH_TASK,
    CALLBACK_QUEUE,
    CALLBACK_TASK,
    PRUNE_TASK,
    RECEIPT_SWEEP_TASK,
)
from worker import logs, resilience, transport  # noqa: F401  (before Celery connects and sets up logging)

# Threads suit sending: each task mostly waits on the webhook, and prefork keeps only one POST
# in flight per process (bench/PROFILE.md, "Figures behind the code's choices", has both).
DEFAULT_POOL = "threads"
# Per process. Run one worker process per core (`make run` and compose start two): a process
# is held to about one core by the interpreter lock, so two processes of 32 threads beat one
# of 64 at the same POSTs in flight (`make bench`, "2 workers against 1").
DEFAULT_CONCURRENCY = 32
# Each app's settings, kept beside its configuration rather than in it: `celery inspect conf`
# and Flower show the configuration, and the settings hold the service's secrets.
_SETTINGS: WeakKeyDictionary[Celery, Settings] = WeakKeyDictionary()


def create_celery_app(settings: Settings) -> Celery:
    app = Celery("messaging", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        worker_pool=DEFAULT_POOL,
        worker_concurrency=DEFAULT_CONCURRENCY,
        # Ack after the task ran, and redeliver a task whose worker died: nothing is lost.
        # A redelivered send cannot POST twice: its claim is already marked in flight.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Each thread has its next task at hand when a POST ends, instead of waiting for an ack
        # and a fetch from Redis (bench/PROFILE.md: 2 helps against a slow webhook, 4 no more).
        # A crash redelivers the prefetched tasks too; they were never started, so their
        # claims return to pending and the redelivered copies find them gone.
        worker_prefetch_multiplier=2,
        # Outcomes live in PostgreSQL; no result backend.
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # Sends stay on Celery's default queue; batches (and pruning, sweeps) go to their own, status callbacks
        # to theirs. A worker consumes every queue listed here unless told otherwise (`-Q`), and kombu takes
        # from them in turn.
        task_queues=(_queue(app.conf.task_default_queue), _queue(BATCH_QUEUE), _queue(CALLBACK_QUEUE)),
        task_routes={
            **{task: {"queue": BATCH_QUEUE} for task in (BATCH_TASK, PRUNE_TASK, RECEIPT_SWEEP_TASK, CALLBACK_DISPATCH_TASK)},
            CALLBACK_TASK: {"queue": CALLBACK_QUEUE},
        },
        broker_transport=_transport(settings),
        broker_transport_options=_transport_options(settings),
        # A demoted Redis master answers writes with READONLY, which kombu counts as a channel
        # error: without this the consumer gives up instead of reconnecting to the new master.
        broker_channel_error_retry=True,
        # RabbitMQ: a consumer that hears nothing for two heartbeats reconnects (Celery's
        # default, 120 s, would leave it on a silent connection for four minutes).
        broker_heartbeat=timeouts.BROKER_HEARTBEAT_SECONDS,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # A lost broker connection must not cancel POSTs under way: they finish and are recorded.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Task events cost a Redis publish (and, with kombu's Redis transport, a new client)
        # per event, three events per task: a large share of a worker's CPU (bench/PROFILE.md).
        # Off by default; Flower switches them on while it runs (its enable_events).
        worker_send_task_events=False,
        worker_hijack_root_logger=True,
        beat_scheduler="worker.beat:HeartbeatScheduler",
        beat_max_loop_interval=5,
        beat_schedule={
            "send-due-messages": {
                "task": BATCH_TASK,
                "schedule": settings.send_interval_seconds,
                # A batch that waited a whole period is superseded by the next one.
                "options": {"expires": max(settings.send_interval_seconds, 1.0)},
            },
            "prune": {
                "task": PRUNE_TASK,
                "schedule": PRUNE_EVERY_SECONDS,
                "options": {"expires": PRUNE_EVERY_SECONDS},
            },
            **_receipt_sweep(settings),
            **_callback_dispatch(settings),
        },
    )
    _SETTINGS[app] = settings
    return app


def _receipt_sweep(settings: Settings) -> dict[str, dict]:
    """The receipts' sweep, scheduled only while receipts are on."""
    if not settings.receipts_enabled:
        return {}
    return {
        "sweep-receipts": {
            "task": RECEIPT_SWEEP_TASK,
            "schedule": SWEEP_EVERY_SECONDS,
            "options": {"expires": SWEEP_EVERY_SECONDS},
        }
    }


def _callback_dispatch(settings: Settings) -> dict[str, dict]:
    """The status callbacks' sweep, scheduled only while callbacks are on."""
    if not settings.status_callbacks:
        return {}
    return {
        "dispatch-callbacks": {
            "task": CALLBACK_DISPATCH_TASK,
            "schedule": DISPATCH_EVERY_SECONDS,
            "options": {"expires": DISPATCH_EVERY_SECONDS * 5},
        }
    }


def settings_of(app: Celery) -> Settings:
    """The settings `app` was created with."""
    return _SETTINGS[app]


def _queue(name: str) -> Queue:
    """A queue as Celery declares a missing one: a direct exchange of the same name."""
    return Queue(name, Exchange(name), routing_key=name)


def _transport_options(settings: Settings) -> dict[str, object]:
    """Broker options that depend on the broker: bounds on every wait on its connections, and:

    Redis redelivers a task not acknowledged within `visibility_timeout`; it must outlast the
    longest wait in the queue plus a send, or a task could run twice. RabbitMQ has no such
    timeout (it redelivers only when the consumer's connection closes), so it gets none.
    """
    options = timeouts.broker_transport_options(settings.broker_url)
    if _on_redis(settings):
        options["visibility_timeout"] = max(3600, 4 * int(settings.claim_timeout_seconds))
    return {**options, **sentinel_transport_options(settings)}


def _transport(settings: Settings) -> str | None:
    """The app's own Redis transport (worker/transport.py), plain or through Sentinels; kombu's for the rest."""
    if _scheme(settings) == SENTINEL_SCHEME:
        return transport.SENTINEL_TRANSPORT
    return transport.TRANSPORT if _on_redis(settings) else None


def _scheme(settings: Settings) -> str:
    return settings.broker_url.partition(":")[0].split("+")[0]


def _on_redis(settings: Settings) -> bool:
    return _scheme(settings) in ("redis", "rediss", SENTINEL_SCHEME)
