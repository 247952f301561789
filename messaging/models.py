"""The message and its delivery states, as the domain sees them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID


class Status(enum.IntEnum):
    """`messages.sending_status`; the numbers are the seed's, plus SENDING for claims."""

    PENDING = 0
    SENT = 1
    FAILED = 2
    SENDING = 3

    @property
    def label(self) -> str:
        return self.name.lower()


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

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
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
        )


@dataclass(frozen=True)
class Claim:
    """A message claimed by a batch; its token is the id of the task that may send it."""

    message_id: UUID
    token: UUID
    created_at: datetime


@dataclass(frozen=True)
class Outgoing:
    """What one send needs: the message's content, recipient and attempts so far."""

    id: UUID
    content: str
    recipient_phone_number: str
    attempts: int
