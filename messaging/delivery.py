"""The delivery rules: claim a batch, send one claimed message, record what happened."""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar
from uuid import UUID

from messaging import cache, store
from messaging.errors import BrokerUnavailable, CacheUnavailable, DatabaseUnavailable
from messaging.logs import Throttle, fields
from messaging.models import Claim, Outgoing, Status
from messaging.runtime import Runtime
from messaging.webhook import Accepted, DeliveryFailed

log = logging.getLogger(__name__)
T = TypeVar("T")

# Task names shared by the worker that defines them and the API that sends them.
BATCH_TASK = "messaging.run_batch"
SEND_TASK = "messaging.send_message"

outage_log = Throttle(seconds=30)


class Outcome(enum.Enum):
    SENT = "sent"
    ALREADY_SENT = "already_sent"  # found in the delivery cache: recorded, not POSTed again
    RETRY_LATER = "retry_later"
    FAILED = "failed"
    RELEASED = "released"  # sending was stopped before this task began
    SKIPPED = "skipped"  # the claim is not this task's (duplicate, stale or already handled)


@dataclass(frozen=True)
class BatchResult:
    enabled: bool
    claimed: list[Claim] = field(default_factory=list)
    recovered: int = 0


Enqueue = Callable[[list[Claim]], None]


def run_batch(runtime: Runtime, enqueue: Enqueue) -> BatchResult:
    """Return stale claims; then, while enabled, claim due messages and hand them to `enqueue`."""
    settings = runtime.settings
    # Stale claims go back even while sending is stopped: nothing stays in `sending`.
    recovered = store.recover_stale_claims(runtime.pool, settings.claim_timeout_seconds, settings.max_attempts)
    for message_id in recovered:
        log.warning("event=claim_expired %s", fields(message_id=message_id))
    if not runtime.cache.is_enabled():
        return BatchResult(enabled=False, recovered=len(recovered))
    claims = store.claim_due(runtime.pool, settings.send_batch_size)
    if claims:
        _hand_over(runtime, claims, enqueue)
    runtime.metrics.batch(len(claims), len(recovered))
    log.info("event=batch %s", fields(claimed=len(claims), recovered=len(recovered)))
    return BatchResult(enabled=True, claimed=claims, recovered=len(recovered))


def _hand_over(runtime: Runtime, claims: list[Claim], enqueue: Enqueue) -> None:
    """Enqueue after the claim committed; if the broker refuses, give the claims back at once."""
    try:
        enqueue(claims)
    except BrokerUnavailable:
        # A task that did get through finds its claim gone and sends nothing.
        for claim in claims:
            store.release_claim(runtime.pool, claim.message_id, claim.token)
        raise


def deliver(runtime: Runtime, message_id: UUID, token: UUID) -> Outcome:
    """Send one claimed message at most once per claim and record the outcome."""
    enabled, cached = _switch_and_cached_delivery(runtime, message_id)
    if not enabled:
        released = store.release_claim(runtime.pool, message_id, token)
        return _finish(runtime, message_id, Outcome.RELEASED if released else Outcome.SKIPPED)
    if cached is not None:
        store.mark_sent(runtime.pool, message_id, cached[0], cached[1], attempted=False)
        return _finish(runtime, message_id, Outcome.ALREADY_SENT)
    outgoing = store.start_sending(runtime.pool, message_id, token)
    if outgoing is None:
        return _finish(runtime, message_id, Outcome.SKIPPED)
    try:
        accepted = runtime.webhook.send(outgoing.id, outgoing.recipient_phone_number, outgoing.content)
    except DeliveryFailed as failure:
        return _record_failure(runtime, outgoing, token, failure)
    return _record_success(runtime, outgoing, accepted)


def _switch_and_cached_delivery(runtime: Runtime, message_id: UUID) -> tuple[bool, tuple[datetime, str | None] | None]:
    """Is sending on, and the cached (sent_at, messageId) of an earlier delivery, if any."""
    try:
        enabled, entry = runtime.cache.switch_and_delivery(message_id)
    except CacheUnavailable as error:
        # Without the switch we cannot know sending is still wanted: hold back.
        if outage_log.allow("switch"):
            log.warning("event=dependency_down %s", fields(dependency="redis", reason=error))
        return False, None
    if entry is None:
        return enabled, None
    try:
        sent_at = datetime.fromisoformat(str(entry.get("sent_at")))
    except ValueError:
        sent_at = datetime.now(timezone.utc)
    return enabled, (sent_at, entry.get("messageId"))


def _record_success(runtime: Runtime, outgoing: Outgoing, accepted: Accepted) -> Outcome:
    sent_at = datetime.now(timezone.utc)
    # The cache first: if recording in PostgreSQL fails, the next claim finds it and does not POST.
    # The metrics ride in the same round trip.
    pipe = runtime.redis.pipeline(transaction=False)
    runtime.cache.remember_sent(outgoing.id, accepted.webhook_message_id, sent_at, pipe=pipe)
    runtime.metrics.delivery(Outcome.SENT.value, accepted.seconds, pipe=pipe)
    try:
        with cache.wrap_errors():
            pipe.execute()
    except CacheUnavailable as error:
        if outage_log.allow("cache"):
            log.warning("event=dependency_down %s", fields(dependency="redis", reason=error))
    _with_db_retries(lambda: store.mark_sent(runtime.pool, outgoing.id, sent_at, accepted.webhook_message_id))
    return _finish(
        runtime,
        outgoing.id,
        Outcome.SENT,
        accepted.seconds,
        counted=True,
        attempt=outgoing.attempts + 1,
        status=accepted.status_code,
    )


def _record_failure(runtime: Runtime, outgoing: Outgoing, token: UUID, failure: DeliveryFailed) -> Outcome:
    settings = runtime.settings
    attempt = outgoing.attempts + 1
    delay = retry_delay(attempt, settings.retry_base_seconds, settings.retry_max_seconds, failure.retry_after)
    status = _with_db_retries(
        lambda: store.record_failed_attempt(
            runtime.pool,
            outgoing.id,
            token,
            error=failure.reason,
            retry_in_seconds=delay,
            max_attempts=settings.max_attempts,
            final=not failure.transient,
        )
    )
    outcome = Outcome.FAILED if status is Status.FAILED else Outcome.RETRY_LATER
    return _finish(
        runtime,
        outgoing.id,
        outcome,
        failure.seconds,
        attempt=attempt,
        error=failure.reason,
        retry_in_s=f"{delay:.1f}" if outcome is Outcome.RETRY_LATER else None,
    )


def _finish(
    runtime: Runtime, message_id: UUID, outcome: Outcome, seconds: float | None = None, *, counted: bool = False, **details
) -> Outcome:
    """One log line and one metrics update per send task (unless the caller `counted` it already)."""
    if not counted:
        runtime.metrics.delivery(outcome.value, seconds)
    duration = None if seconds is None else f"{seconds * 1000:.1f}"
    level = logging.WARNING if outcome in (Outcome.RETRY_LATER, Outcome.FAILED) else logging.INFO
    log.log(level, "event=delivery %s", fields(message_id=message_id, outcome=outcome.value, duration_ms=duration, **details))
    return outcome


def retry_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Exponential backoff with equal jitter; a provider's Retry-After wins, within the cap."""
    if retry_after is not None:
        return min(cap, max(0.0, retry_after))
    ceiling = min(cap, base * 2 ** min(attempt - 1, 32))
    return ceiling / 2 + random.random() * ceiling / 2


def _with_db_retries(record: Callable[[], T], attempts: int = 4, first_pause: float = 0.5) -> T:
    """Recording an outcome already POSTed is worth a few quick retries through a database blip."""
    for attempt in range(attempts):
        try:
            return record()
        except DatabaseUnavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(first_pause * 2**attempt)
