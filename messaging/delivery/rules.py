"""The delivery rules: claim a batch, send one claimed message, record what happened."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from uuid import UUID

from messaging.delivery import faults, recovery
from messaging.delivery.outcomes import Outcome, Report, finish
from messaging.delivery.ports import (
    Accepted,
    Admission,
    CachedDelivery,
    DeliveryFailed,
    NotSent,
    Ports,
    Preflight,
    Verdict,
)
from messaging.delivery.retries import retry_delay, with_db_retries
from messaging.domain.message import Attempt, Claim, Outgoing, Status
from messaging.errors import BrokerUnavailable, CacheUnavailable, DependencyUnavailable
from messaging.logs import Throttle, fields

log = logging.getLogger(__name__)

outage_log = Throttle(seconds=30)


@dataclass(frozen=True)
class BatchResult:
    enabled: bool
    claimed: list[Claim] = field(default_factory=list)
    recovered: int = 0


Enqueue = Callable[[list[Claim]], None]


def run_batch(ports: Ports, enqueue: Enqueue) -> BatchResult:
    """Return stale claims; then, while enabled, claim due messages and hand them to `enqueue`."""
    settings = ports.settings
    # Stale claims go back even while sending is stopped: nothing stays in `sending`.
    recovered = recovery.recover_stale_claims(ports)
    if not ports.shared.is_enabled():
        return BatchResult(enabled=False, recovered=len(recovered))
    # No more than flow control lets through before the next batch: an open breaker or a pause
    # claims nothing, a rate limit what it allows, instead of claims that would only go back.
    limit = ports.flow.claimable(settings.send_batch_size, settings.send_interval_seconds)
    claims = ports.claims.claim_due(limit) if limit else []
    if claims:
        _hand_over(ports, claims, enqueue)
    ports.shared.count_batch(len(claims), len(recovered))
    log.info("event=batch %s", fields(claimed=len(claims), recovered=len(recovered)))
    return BatchResult(enabled=True, claimed=claims, recovered=len(recovered))


def _hand_over(ports: Ports, claims: list[Claim], enqueue: Enqueue) -> None:
    """Enqueue after the claim committed; if the broker refuses, give the claims back at once."""
    try:
        enqueue(claims)
    except BrokerUnavailable:
        # A task that did get through finds its claim gone and sends nothing.
        for claim in claims:
            ports.claims.release_claim(claim.message_id, claim.token)
        raise


def deliver(ports: Ports, message_id: UUID, token: UUID) -> Report:
    """Send one claimed message at most once per claim and record the outcome. A fault that is not
    the message's gives the claim back unsent and uncounted (messaging/delivery/faults.py)."""
    try:
        return _deliver(ports, message_id, token)
    except DependencyUnavailable:
        raise  # the task says so; the claim expires and goes back after CLAIM_TIMEOUT_SECONDS
    except Exception as error:  # any other: a bug or a library's surprise, not the message's fault
        # Only a claim that has not started sending goes back here: one that has may have been
        # delivered, and claim recovery reads the delivery cache before it returns it.
        delay = faults.release_delay(ports.settings, may_have_left=False)
        if not ports.claims.release_claim(message_id, token, delay):
            raise
        return _not_sent(ports, message_id, error, delay)


def _deliver(ports: Ports, message_id: UUID, token: UUID) -> Report:
    preflight = _preflight(ports, message_id)
    if not preflight.enabled:
        released = ports.claims.release_claim(message_id, token)
        return finish(ports, message_id, Outcome.RELEASED if released else Outcome.SKIPPED)
    cached = preflight.cached
    if cached is not None:
        recorded = ports.claims.mark_sent(message_id, token, cached.sent_at, cached.webhook_message_id, attempted=False)
        return finish(ports, message_id, Outcome.ALREADY_SENT if recorded else Outcome.SKIPPED)
    admission = _admit(ports, token, preflight.flow_clear)
    if not admission.go:
        return _hold(ports, message_id, token, admission)
    outgoing = ports.claims.start_sending(message_id, token)
    if outgoing is None:
        ports.flow.record(admission, Verdict.NEITHER)
        return finish(ports, message_id, Outcome.SKIPPED)
    try:
        # Right before the POST, so that nothing slower (a database connection opened) comes between.
        ports.flow.wait_for_slot(admission)
    except Exception as error:  # nothing was POSTed: whatever it is, it is not the message's fault
        return _give_back(ports, outgoing, token, admission, error, may_have_left=False)
    started_at = datetime.now(timezone.utc)
    try:
        accepted = ports.provider.send(outgoing.id, outgoing.recipient_phone_number, outgoing.content)
    except DeliveryFailed as failure:
        _tell_flow_control(ports, admission, failure)
        return _record_failure(ports, outgoing, token, failure, started_at)
    except NotSent as fault:
        return _give_back(ports, outgoing, token, admission, fault, may_have_left=False)
    except Exception as error:  # no answer to classify: the request may have left
        return _give_back(ports, outgoing, token, admission, error, may_have_left=True)
    ports.flow.record(admission, Verdict.HEALTHY)
    return _record_success(ports, outgoing, token, accepted, started_at)


def _preflight(ports: Ports, message_id: UUID) -> Preflight:
    """Is sending on, an earlier delivery of the message if any, and must flow control be asked."""
    try:
        return ports.shared.preflight(message_id)
    except CacheUnavailable as error:
        # Without the switch we cannot know sending is still wanted: hold back.
        if outage_log.allow("switch"):
            log.warning("event=dependency_down %s", fields(dependency="redis", reason=error))
        return Preflight(enabled=False)


def _admit(ports: Ports, token: UUID, clear: bool) -> Admission:
    try:
        return ports.flow.admit(token, clear=clear)
    except CacheUnavailable as error:
        # Without the shared limit and breaker, sending could flood a provider that is down: hold back.
        if outage_log.allow("flow"):
            log.warning("event=dependency_down %s", fields(dependency="redis", reason=error))
        return Admission(go=False, reason="redis_down")


def _hold(ports: Ports, message_id: UUID, token: UUID, admission: Admission) -> Report:
    """Back to pending unsent and uncounted, due again when flow control says it may go."""
    held = ports.claims.release_claim(message_id, token, delay_seconds=admission.wait_seconds)
    if not held:
        return finish(ports, message_id, Outcome.SKIPPED)
    return finish(
        ports, message_id, Outcome.HELD, reason=admission.reason, retry_in_s=f"{admission.wait_seconds:.2f}"
    )


def _give_back(
    ports: Ports, outgoing: Outgoing, token: UUID, admission: Admission, error: Exception, *, may_have_left: bool
) -> Report:
    """A fault that is not the message's, after the claim started sending: back to pending unsent,
    no attempt counted, due again after `faults.release_delay`."""
    ports.flow.record(admission, Verdict.NEITHER)
    delay = faults.release_delay(ports.settings, may_have_left=may_have_left)
    if not ports.claims.release_claim(outgoing.id, token, delay, started=True):
        return finish(ports, outgoing.id, Outcome.SKIPPED)
    return _not_sent(ports, outgoing.id, error, delay)


def _not_sent(ports: Ports, message_id: UUID, error: Exception, delay: float) -> Report:
    setting = faults.report(message_id, error, delay)
    return finish(ports, message_id, Outcome.NOT_SENT, setting=setting, retry_in_s=f"{delay:g}")


def _tell_flow_control(ports: Ports, admission: Admission, failure: DeliveryFailed) -> None:
    """A 429 with Retry-After pauses every worker, not only this message; other transient failures count
    toward the breaker. A provider that says when to come back is up: the pause is enough, and the
    POSTs already under way when it said so (as many as the workers' threads) must not open the breaker."""
    if failure.status_code == 429 and failure.retry_after:
        ports.flow.pause(min(failure.retry_after, ports.settings.retry_max_seconds), why=failure.reason)
        ports.flow.record(admission, Verdict.NEITHER)
        return
    ports.flow.record(admission, Verdict.FAILING if failure.transient else Verdict.NEITHER, why=failure.reason)


def _record_success(ports: Ports, outgoing: Outgoing, token: UUID, accepted: Accepted, started_at: datetime) -> Report:
    delivery = CachedDelivery(datetime.now(timezone.utc), accepted.webhook_message_id)
    # The cache first: if recording in PostgreSQL fails, the next claim finds it and does not POST.
    try:
        ports.shared.remember_sent(outgoing.id, delivery, accepted.seconds)
    except CacheUnavailable as error:
        if outage_log.allow("cache"):
            log.warning("event=dependency_down %s", fields(dependency="redis", reason=error))
    attempt = _attempt_record(outgoing, started_at, accepted.seconds, accepted.status_code, answer=accepted.answer)
    with_db_retries(
        lambda: ports.claims.mark_sent(
            outgoing.id, token, delivery.sent_at, delivery.webhook_message_id, attempted=True, attempt=attempt
        )
    )
    return finish(
        ports,
        outgoing.id,
        Outcome.SENT,
        accepted.seconds,
        counted=True,
        attempt=outgoing.attempts + 1,
        status=accepted.status_code,
    )


def _record_failure(
    ports: Ports, outgoing: Outgoing, token: UUID, failure: DeliveryFailed, started_at: datetime
) -> Report:
    settings = ports.settings
    attempt = outgoing.attempts + 1
    delay = retry_delay(attempt, settings.retry_base_seconds, settings.retry_max_seconds, failure.retry_after)
    record = _attempt_record(
        outgoing,
        started_at,
        failure.seconds,
        failure.status_code,
        error_class=failure.error_class.value,
        retry_after=failure.retry_after,
        answer=failure.answer,
    )
    status = with_db_retries(
        lambda: ports.claims.record_failed_attempt(
            outgoing.id,
            token,
            error=failure.reason,
            retry_in_seconds=delay,
            max_attempts=settings.max_attempts,
            final=not failure.transient,
            attempt=record,
        )
    )
    outcome = Outcome.FAILED if status is Status.FAILED else Outcome.RETRY_LATER
    retry_at = datetime.now(timezone.utc) + timedelta(seconds=delay) if outcome is Outcome.RETRY_LATER else None
    finish(
        ports,
        outgoing.id,
        outcome,
        failure.seconds,
        attempt=attempt,
        error=failure.reason,
        retry_in_s=f"{delay:.1f}" if retry_at else None,
    )
    return Report(outcome, failure.reason, retry_at)


def _attempt_record(
    outgoing: Outgoing,
    started_at: datetime,
    seconds: float,
    http_status: int | None,
    *,
    error_class: str | None = None,
    retry_after: float | None = None,
    answer: str = "",
) -> Attempt:
    """The record of one POST, written with its outcome (message_attempts)."""
    return Attempt(
        message_id=outgoing.id,
        attempt=outgoing.attempts + 1,
        trigger=outgoing.attempt_trigger,
        started_at=started_at,
        duration_ms=round(seconds * 1000, 3),
        http_status=http_status,
        error_class=error_class,
        retry_after_seconds=retry_after,
        answer=answer or None,
    )
