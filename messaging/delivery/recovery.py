"""Claims whose task never recorded an outcome go back after CLAIM_TIMEOUT_SECONDS; one whose delivery
the cache remembers is recorded as sent instead, never failed and never POSTed again."""

from __future__ import annotations

import logging
from uuid import UUID

from messaging.delivery.ports import CachedDelivery, Ports
from messaging.domain.message import Attempt, StaleSend
from messaging.errors import CacheUnavailable
from messaging.logs import Throttle, fields

log = logging.getLogger(__name__)

outage_log = Throttle(seconds=30)


def recover_stale_claims(ports: Ports) -> list[UUID]:
    """Return every claim older than the timeout: the ids recorded as sent from the cache, then those
    back to pending (or failed, at their last attempt)."""
    settings = ports.settings
    stale = ports.claims.stale_sends(settings.claim_timeout_seconds)
    spare: list[UUID] = []
    recorded: list[UUID] = []
    if stale:
        try:
            cached = ports.shared.cached_deliveries([send.message_id for send in stale])
        except CacheUnavailable as error:
            # Without the cache a delivered message could be counted failed: its claim waits for Redis.
            if outage_log.allow("recovery"):
                log.warning("event=dependency_down %s", fields(dependency="redis", reason=error))
            spare = [send.message_id for send in stale]
            cached = {}
        recorded = [send.message_id for send in stale if send.message_id in cached and _record(ports, send, cached)]
    returned = ports.claims.recover_stale_claims(settings.claim_timeout_seconds, settings.max_attempts, spare=spare)
    for message_id in recorded:
        log.warning("event=claim_expired %s", fields(message_id=message_id, recorded="sent", source="delivery_cache"))
    for message_id in returned:
        log.warning("event=claim_expired %s", fields(message_id=message_id))
    return recorded + returned


def _record(ports: Ports, send: StaleSend, cached: dict[UUID, CachedDelivery]) -> bool:
    """The POST of a stale claim that the cache says was delivered (its worker lost the database or died
    before recording it): sent, with the provider's messageId and time, and its attempt, whose answer is lost."""
    delivery = cached[send.message_id]
    attempt = Attempt(
        message_id=send.message_id,
        attempt=send.attempts + 1,
        trigger=send.attempt_trigger,
        started_at=send.started_at,
        duration_ms=None,
        http_status=None,
        error_class=None,
        retry_after_seconds=None,
        answer=None,
    )
    return ports.claims.mark_sent(
        send.message_id, send.token, delivery.sent_at, delivery.webhook_message_id, attempted=True, attempt=attempt
    )
