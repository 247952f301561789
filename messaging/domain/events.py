"""Events about messages, the status callbacks' subject: what changed, and where its callback stands.

Every change of a message's state is one event, written in the transaction that made the change
(messaging/postgres/queries.sql: note_events) and POSTed to STATUS_CALLBACK_URL at least once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID


class EventType(enum.Enum):
    SENT = "message.sent"  # the provider accepted it
    FAILED = "message.failed"  # no more attempts: failed for good
    DELIVERED = "message.delivered"  # the provider's receipt: it reached the phone
    UNDELIVERED = "message.undelivered"  # the provider's receipt: it did not (undelivered or failed)
    EXPIRED = "message.expired"  # no final receipt within RECEIPT_TIMEOUT_SECONDS
    CANCELED = "message.canceled"  # canceled while pending


class CallbackState(enum.Enum):
    PENDING = "pending"  # not POSTed with a 2xx answer yet; tried again after a backoff
    DELIVERED = "delivered"  # the callback receiver answered 2xx
    FAILED = "failed"  # STATUS_CALLBACK_MAX_ATTEMPTS used, or its message was deleted meanwhile


@dataclass(frozen=True)
class Event:
    """One event as its callback's POST needs it."""

    id: UUID
    message_id: UUID
    type: EventType
    occurred_at: datetime
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """What became of one event of a batch: POSTed (answered 2xx or not), or given back unposted.

    An unposted one is due again after `delay_seconds`, uncounted; `final` fails it at once, unposted.
    """

    event_id: UUID
    posted: bool
    delivered: bool = False
    http_status: int | None = None
    error: str | None = None
    delay_seconds: float = 0.0
    final: bool = False


@dataclass(frozen=True)
class EventEntry:
    """One event in a message's history, with its callback's state."""

    id: UUID
    type: str
    occurred_at: datetime
    callback_state: str
    attempts: int
    last_http_status: int | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EventEntry:
        return cls(**row)


def callback_body(event: Event, message: dict[str, Any]) -> dict[str, Any]:
    """The body of an event's POST, in Standard Webhooks' shape: its type, when it happened, and the
    message object (messaging/domain/public.py) as it is when the POST is made: `type` says what changed."""
    return {"type": event.type.value, "timestamp": event.occurred_at.isoformat(), "data": message}
