"""Taking a new message: the rules its content and send time must meet, checked before it is stored."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from psycopg_pool import ConnectionPool

from messaging import store
from messaging.errors import InvalidMessage
from messaging.models import Message

SCHEDULE_AHEAD = timedelta(days=35)
# A send_at this little in the past means "now": the sender's clock and the request's travel.
CLOCK_SKEW = timedelta(minutes=1)


def submit(
    pool: ConnectionPool,
    recipient_phone_number: str,
    content: str,
    send_at: datetime | None = None,
    *,
    now: datetime | None = None,
) -> Message:
    """Store a new pending message, due at once or at `send_at`; InvalidMessage names what breaks a rule."""
    problems = problems_with(content, send_at, now or datetime.now(timezone.utc))
    if problems:
        raise InvalidMessage(problems)
    return store.insert(pool, recipient_phone_number, content, send_at=send_at)


def problems_with(content: str, send_at: datetime | None, now: datetime) -> dict[str, list[str]]:
    """What is wrong with a new message's content and send time, per field (empty when nothing)."""
    problems = {}
    if not content.strip():
        problems["content"] = ["Must contain something other than whitespace."]
    if send_at is None:
        return problems
    if send_at.tzinfo is None:
        problems["send_at"] = ["Must have a time zone, such as Z or +03:00."]
    elif send_at < now - CLOCK_SKEW:
        problems["send_at"] = ["Must not be in the past."]
    elif send_at > now + SCHEDULE_AHEAD:
        problems["send_at"] = [f"Must be at most {SCHEDULE_AHEAD.days} days ahead."]
    return problems
