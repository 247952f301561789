"""Status callbacks out: hand the due events of the outbox to tasks in batches, and POST a batch's events
to STATUS_CALLBACK_URL, one by one.

At least once: an event is written with the change it reports (messaging/postgres/queries.sql:
note_events) and stays `pending` until a POST of it is answered 2xx, or it has used
STATUS_CALLBACK_MAX_ATTEMPTS, with the messages' backoff between attempts. Each event keeps its own
attempts and backoff; a batch only shares the task, one read and one write: one task and four
statements per event cost a send's worth of CPU (bench/PROFILE.md, status callbacks).

Apart from delivery: the callback tasks have a queue of their own, at most BATCHES_IN_FLIGHT batches
are handed out at once across all workers, and a worker POSTs callbacks on at most one thread in
THREADS_PER_CALLBACK_SLOT at a time (a task that finds no slot free gives its batch back at once). Each
POST is bounded by STATUS_CALLBACK_TIMEOUT_SECONDS and a batch starts no POST after BATCH_SECONDS (the
rest go back, uncounted), so a slow receiver holds a few threads for a bounded time, and sends keep the
rest. While sends queue up for the workers, callbacks yield: one batch in flight, handed out once a
second. Nothing here ever touches a message.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from uuid import UUID

from messaging.delivery.ports import DeliveryFailed, NotSent
from messaging.delivery.retries import retry_delay
from messaging.domain.events import CallbackState, Event, Outcome, callback_body
from messaging.domain.message import Message
from messaging.domain.public import message_object
from messaging.postgres.events import EventRecords
from messaging.provider.webhook import WebhookClient
from messaging.settings import Settings

# Events per batch, and batches handed out and not yet reported, across all workers.
BATCH_SIZE = 50
BATCHES_IN_FLIGHT = 8
# Callbacks yield to sends: while this many claims wait for a worker to start them (sends queue up), at most
# BATCHES_WHILE_SENDS_QUEUED batches are in flight, handed out by the sweep only (not by a task that has just
# reported), so sends keep the CPU and callbacks catch up once the queue empties (bench/PROFILE.md).
SENDS_QUEUED_CLAIMS = 100
BATCHES_WHILE_SENDS_QUEUED = 1
# A batch starts no POST after this long; the events it did not reach are due again at once.
BATCH_SECONDS = 10.0
# The sweep that hands out events due (first attempts, retries after their backoff, and those whose
# task never reported: a worker that crashed) runs this often, on the batch queue.
DISPATCH_EVERY_SECONDS = 1.0
# A handed-out batch is due again this long after its last POST's deadline, when its task has not reported.
LEASE_MARGIN_SECONDS = 60.0
# A worker of 32 threads POSTs at most 4 batches at once.
THREADS_PER_CALLBACK_SLOT = 8
# A batch given back for want of a slot is due again after this long.
NO_SLOT_DELAY_SECONDS = 1.0
RETRYING = "retrying"
MESSAGE_GONE = "its message was deleted (retention) before the callback was delivered"


def lease_seconds(settings: Settings) -> float:
    """How long a task has a batch: its POSTs' time, the last POST's timeout, and a margin."""
    return BATCH_SECONDS + settings.status_callback_timeout_seconds + LEASE_MARGIN_SECONDS


def dispatch(events: EventRecords, settings: Settings, *, full_only: bool = False) -> list[UUID]:
    """Hand out the events due now in batches; each batch's token, the id of the task to POST it (none while
    callbacks are off). With `full_only`, only batches of BATCH_SIZE: a task that has just reported hands
    out the next full batch at once, and the sweep the rest within DISPATCH_EVERY_SECONDS; under load,
    batches stay full rather than one per handful of events. While sends queue up, only the sweep hands
    out, one batch at a time."""
    if not settings.status_callbacks:
        return []
    tokens: list[UUID] = []
    for _ in range(BATCHES_IN_FLIGHT):
        token = uuid.uuid4()
        handed = events.dispatch_batch(token, size=BATCH_SIZE, batches=BATCHES_IN_FLIGHT,
                                       lease_seconds=lease_seconds(settings),
                                       at_least=BATCH_SIZE if full_only else 1, sends_queued=SENDS_QUEUED_CLAIMS,
                                       batches_while_sends_queued=0 if full_only else BATCHES_WHILE_SENDS_QUEUED)  # fmt: skip
        if handed:
            tokens.append(token)
        if handed < BATCH_SIZE:
            break
    return tokens


def slot_count(concurrency: int) -> int:
    """How many batches a worker process with `concurrency` threads POSTs at once."""
    return max(1, concurrency // THREADS_PER_CALLBACK_SLOT)


def slots(concurrency: int) -> threading.BoundedSemaphore:
    """The callback slots of a worker process with `concurrency` threads."""
    return threading.BoundedSemaphore(slot_count(concurrency))


def send_batch(
    token: UUID,
    *,
    slots: threading.Semaphore,
    events: EventRecords,
    client: WebhookClient,
    settings: Settings,
    clock: Callable[[], float] = time.monotonic,
) -> Counter[str]:
    """POST the events of the batch `token` and record their outcomes; its attempts by result (none
    when the batch is no longer this task's). With every callback slot of this worker busy, the batch is
    given back, due again in a second."""
    batch = events.batch(token)
    if not batch:
        return Counter()
    if not slots.acquire(blocking=False):
        back = [Outcome(event.id, posted=False, delay_seconds=NO_SLOT_DELAY_SECONDS) for event, _ in batch]
        events.record(token, back, max_attempts=settings.status_callback_max_attempts)
        return Counter()
    try:
        deadline = clock() + BATCH_SECONDS
        outcomes = [_outcome(event, message, deadline, client=client, settings=settings, clock=clock)
                    for event, message in batch]  # fmt: skip
    finally:
        slots.release()
    states = events.record(token, outcomes, max_attempts=settings.status_callback_max_attempts)
    return results(outcomes, states)


def results(outcomes: list[Outcome], states: dict[UUID, CallbackState]) -> Counter[str]:
    """The attempts of a batch by result: `delivered`, `retrying` (it failed, another follows) or `failed`
    (no more); events given back unposted are none of them."""
    counted: Counter[str] = Counter()
    for outcome in outcomes:
        state = states.get(outcome.event_id)
        if state is not None and (outcome.posted or outcome.final):
            counted[RETRYING if state is CallbackState.PENDING else state.value] += 1
    return counted


def _outcome(
    event: Event,
    message: Message | None,
    deadline: float,
    *,
    client: WebhookClient,
    settings: Settings,
    clock: Callable[[], float],
) -> Outcome:
    if message is None:
        return Outcome(event.id, posted=False, error=MESSAGE_GONE, final=True)
    if clock() >= deadline:
        return Outcome(event.id, posted=False)
    body = json.dumps(callback_body(event, message_object(message))).encode()
    try:
        accepted = client.post(str(event.id), body)
    except (DeliveryFailed, NotSent) as failure:
        retry_after = failure.retry_after if isinstance(failure, DeliveryFailed) else None
        delay = retry_delay(event.attempts + 1, settings.retry_base_seconds, settings.retry_max_seconds, retry_after)
        return Outcome(event.id, posted=True, http_status=getattr(failure, "status_code", None), error=str(failure),
                       delay_seconds=delay)  # fmt: skip
    return Outcome(event.id, posted=True, delivered=True, http_status=accepted.status_code)
