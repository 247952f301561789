"""The message and its delivery states, as the domain sees them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from messaging.domain.encoding import GSM_7, Length, measure
from messaging.domain.receipts import DeliveryStatus


class Status(enum.IntEnum):
    """`messages.sending_status`; the numbers are the seed's, plus SENDING for claims and CANCELED."""

    PENDING = 0
    SENT = 1
    FAILED = 2
    SENDING = 3
    CANCELED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class Trigger(enum.Enum):
    """Why a message is pending: its first send (scheduled or not), an automatic retry, an operator's."""

    SCHEDULED = "scheduled"
    RETRY = "retry"
    MANUAL = "manual"


@dataclass(frozen=True)
class Message:
    id: UUID
    content: str
    recipient_phone_number: str
    status: Status
    attempts: int
    webhook_message_id: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    updated_at: datetime
    send_at: datetime | None = None
    encoding: str = GSM_7
    segments: int = 1
    # What the provider's receipts said (messaging/domain/receipts.py): None while no final one came.
    delivery_status: DeliveryStatus | None = None
    delivered_at: datetime | None = None
    error_code: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
        # Rows from before migration 0003, and those the seed's INSERT adds, have no stored
        # measure: it is worked out from their content here.
        if row.get("encoding") and row.get("segments"):
            measured = Length(row["encoding"], row["segments"])
        else:
            measured = measure(row["content"])
        return cls(
            id=row["id"],
            content=row["content"],
            recipient_phone_number=row["recipient_phone_number"],
            status=Status(row["sending_status"]),
            attempts=row["attempts"],
            webhook_message_id=row["webhook_message_id"],
            last_error=row["last_error"],
            created_at=row["created_at"],
            sent_at=row["sent_at"],
            updated_at=row["updated_at"],
            send_at=row.get("send_at"),
            encoding=measured.encoding,
            segments=measured.segments,
            delivery_status=DeliveryStatus(row["delivery_status"]) if row.get("delivery_status") else None,
            delivered_at=row.get("delivered_at"),
            error_code=row.get("error_code"),
        )


@dataclass(frozen=True)
class Claim:
    """A message claimed by a batch; its token is the id of the task that may send it."""

    message_id: UUID
    token: UUID
    due_at: datetime  # send_at when scheduled, else created_at: the claim's order


@dataclass(frozen=True)
class StaleSend:
    """A claim that started sending longer ago than the claim timeout and recorded no outcome."""

    message_id: UUID
    token: UUID
    attempts: int
    attempt_trigger: Trigger
    started_at: datetime


@dataclass(frozen=True)
class Outgoing:
    """What one send needs: the message's content, recipient, attempts so far and why it is due."""

    id: UUID
    content: str
    recipient_phone_number: str
    attempts: int
    attempt_trigger: Trigger = Trigger.SCHEDULED

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Outgoing:
        return cls(**{**row, "attempt_trigger": Trigger(row.get("attempt_trigger", "scheduled"))})


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt, as `message_attempts` keeps it."""

    message_id: UUID
    attempt: int
    trigger: Trigger
    started_at: datetime
    duration_ms: float | None
    http_status: int | None
    error_class: str | None
    retry_after_seconds: float | None
    answer: str | None
    id: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Attempt:
        return cls(**{**row, "trigger": Trigger(row["trigger"])})
