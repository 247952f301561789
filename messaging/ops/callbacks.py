"""Status callbacks out: hand the due events of the outbox to tasks, and POST one event to STATUS_CALLBACK_URL.

At least once: an event is written with the change it reports (messaging/postgres/queries.sql:
note_events) and stays `pending` until a POST of it is answered 2xx, or it has used
STATUS_CALLBACK_MAX_ATTEMPTS, with the messages' backoff between attempts. Apart from delivery:
the callback tasks have a queue of their own, at most CALLBACKS_IN_FLIGHT events are handed out
at once across all workers, and a worker POSTs callbacks on at most one thread in
THREADS_PER_CALLBACK_SLOT at a time (a task that finds no slot free gives its event back at once):
a slow receiver holds a few threads, each for at most STATUS_CALLBACK_TIMEOUT_SECONDS, and sends
keep the rest. Nothing here ever touches a message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from messaging.delivery.ports import DeliveryFailed, NotSent
from messaging.delivery.rules import retry_delay
from messaging.domain.events import CallbackState, Dispatch, callback_body
from messaging.domain.message import Message
from messaging.postgres.events import EventRecords
from messaging.postgres.records import Records
from messaging.provider.webhook import WebhookClient
from messaging.settings import Settings

# Events handed out and not yet reported, across all workers.
CALLBACKS_IN_FLIGHT = 8
# The sweep that hands out events due (first attempts, retries after their backoff, and those whose
# task never reported: a worker that crashed) runs this often, on the batch queue.
DISPATCH_EVERY_SECONDS = 1.0
# A handed-out event is due again this long after its POST's deadline, when its task has not reported.
LEASE_MARGIN_SECONDS = 60.0
# A worker of 32 threads POSTs at most 4 callbacks at once.
THREADS_PER_CALLBACK_SLOT = 8
# An event given back for want of a slot is due again after this long.
NO_SLOT_DELAY_SECONDS = 1.0
MESSAGE_GONE = "its message was deleted (retention) before the callback was delivered"


def dispatch(events: EventRecords, settings: Settings) -> list[Dispatch]:
    """The events to hand to callback tasks now (none while callbacks are off)."""
    if not settings.status_callbacks:
        return []
    return events.dispatch_due(CALLBACKS_IN_FLIGHT, settings.status_callback_timeout_seconds + LEASE_MARGIN_SECONDS)


def slots(concurrency: int) -> threading.BoundedSemaphore:
    """The callback slots of a worker process with `concurrency` threads."""
    return threading.BoundedSemaphore(max(1, concurrency // THREADS_PER_CALLBACK_SLOT))


def send(
    handed: Dispatch,
    *,
    slots: threading.Semaphore,
    events: EventRecords,
    records: Records,
    client: WebhookClient,
    settings: Settings,
    render: Callable[[Message], dict[str, Any]],
) -> CallbackState | None:
    """POST one event and record the outcome; None when the event is no longer this dispatch's, or when
    every callback slot of this worker is busy (the event is given back, due again in a second)."""
    if not slots.acquire(blocking=False):
        events.release(handed, NO_SLOT_DELAY_SECONDS)
        return None
    try:
        return _send(handed, events=events, records=records, client=client, settings=settings, render=render)
    finally:
        slots.release()


def _send(
    handed: Dispatch,
    *,
    events: EventRecords,
    records: Records,
    client: WebhookClient,
    settings: Settings,
    render: Callable[[Message], dict[str, Any]],
) -> CallbackState | None:
    event = events.dispatched(handed)
    if event is None:
        return None
    limit = settings.status_callback_max_attempts
    message = records.get(event.message_id)
    if message is None:
        return events.record(handed, delivered=False, error=MESSAGE_GONE, final=True, max_attempts=limit)
    body = json.dumps(callback_body(event, render(message))).encode()
    try:
        accepted = client.post(str(event.id), body)
    except (DeliveryFailed, NotSent) as failure:
        retry_after = failure.retry_after if isinstance(failure, DeliveryFailed) else None
        delay = retry_delay(event.attempts + 1, settings.retry_base_seconds, settings.retry_max_seconds, retry_after)
        return events.record(
            handed,
            delivered=False,
            http_status=getattr(failure, "status_code", None),
            error=str(failure),
            retry_in_seconds=delay,
            max_attempts=limit,
        )
    return events.record(handed, delivered=True, http_status=accepted.status_code, max_attempts=limit)
