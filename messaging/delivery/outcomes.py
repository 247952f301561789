"""What one send task did: its outcome, the report the task decides a retry by, and the one log line
and metrics update that say so."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from messaging.delivery.ports import Ports
from messaging.logs import fields

# An `event=delivery` line is the rules' (messaging/delivery/rules.py decides each outcome): it keeps their logger.
log = logging.getLogger("messaging.delivery.rules")


class Outcome(enum.Enum):
    SENT = "sent"
    ALREADY_SENT = "already_sent"  # found in the delivery cache: recorded, not POSTed again
    RETRY_LATER = "retry_later"
    FAILED = "failed"
    RELEASED = "released"  # sending was stopped before this task began
    HELD = "held"  # flow control held it back (rate limit, open breaker, provider's pause): not an attempt
    NOT_SENT = "not_sent"  # a fault that is not the message's (a setting, an unexpected error): back unsent, not an attempt
    SKIPPED = "skipped"  # the claim is not this task's (duplicate, stale or already handled)


@dataclass(frozen=True)
class Report:
    """What one send task did; for a failed attempt, why, and when the next one may start."""

    outcome: Outcome
    error: str | None = None
    retry_at: datetime | None = None


def finish(
    ports: Ports, message_id: UUID, outcome: Outcome, seconds: float | None = None, *, counted: bool = False, **details
) -> Report:
    """One log line and one metrics update per send task (unless the caller `counted` it already)."""
    if not counted:
        ports.shared.count_delivery(outcome.value, seconds)
    duration = None if seconds is None else f"{seconds * 1000:.1f}"
    level = logging.WARNING if outcome in (Outcome.RETRY_LATER, Outcome.FAILED) else logging.INFO
    log.log(level, "event=delivery %s", fields(message_id=message_id, outcome=outcome.value, duration_ms=duration, **details))
    return Report(outcome)
