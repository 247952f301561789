"""Delivery receipts: what the provider's statuses mean, and what a receipt may change on a message.

Receipts are facts about the phone, applied once: the first final one wins, a repeat of it
changes nothing, and a later, different one is kept in the history but never applied.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class ProviderStatus(enum.Enum):
    """What the provider's receipt says (`status` of the receipt's body); each one is final."""

    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


class DeliveryStatus(enum.Enum):
    """`messages.delivery_status`; null (None) while no final receipt came. Every value is final."""

    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    # No final receipt within RECEIPT_TIMEOUT_SECONDS of sent_at: set by the periodic sweep, not by a receipt.
    EXPIRED = "expired"


# The provider's status -> ours: `failed` (the network gave up on it) did not reach the phone either.
MEANING = {
    ProviderStatus.DELIVERED: DeliveryStatus.DELIVERED,
    ProviderStatus.UNDELIVERED: DeliveryStatus.UNDELIVERED,
    ProviderStatus.FAILED: DeliveryStatus.UNDELIVERED,
}
# GET /messaging/sent?delivery_status=unknown: sent, and no final receipt yet.
UNKNOWN = "unknown"
DELIVERY_FILTERS = tuple(status.value for status in DeliveryStatus) + (UNKNOWN,)


class Outcome(enum.Enum):
    """What became of one receipt (kept in its history row)."""

    APPLIED = "applied"  # the message's first final receipt: it sets delivery_status
    DUPLICATE = "duplicate"  # says what the message already says: nothing changes
    IGNORED = "ignored"  # a later, different final receipt (or one after expiry): recorded, never applied
    KEPT = "kept"  # its message is not recorded sent yet: applied when it is, dropped if it never is


@dataclass(frozen=True)
class Receipt:
    """One delivery receipt, as the provider sent it (its signature already checked)."""

    webhook_message_id: str
    status: ProviderStatus
    error_code: str | None = None
    reported_at: datetime | None = None  # the provider's timestamp, when it sent one

    @property
    def delivery_status(self) -> DeliveryStatus:
        return MEANING[self.status]


def decide(current: DeliveryStatus | None, *, recorded_sent: bool, receipt: Receipt) -> Outcome:
    """What `receipt` does to a message whose delivery status is `current` (for a message not yet
    recorded sent: the status of the receipt kept for it, if any)."""
    if current is None:
        return Outcome.APPLIED if recorded_sent else Outcome.KEPT
    if current is receipt.delivery_status:
        return Outcome.DUPLICATE
    return Outcome.IGNORED


def answer_status(recorded_sent: bool) -> int:
    """The HTTP status a receipt answers: 200 once its message is recorded sent, 202 while it is kept for later."""
    return 200 if recorded_sent else 202
