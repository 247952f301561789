"""The message object as clients see it, written once: every API answer that holds a message (api/schemas.py:
MessageSchema documents the object and dumps through this) and the `data` of each status callback."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from messaging.domain.message import Message


def message_object(message: Message) -> dict[str, Any]:
    """The message as JSON-ready values: times in ISO 8601 in UTC, the status by its name."""
    return {
        "id": str(message.id),
        "content": message.content,
        "recipient_phone_number": message.recipient_phone_number,
        "status": message.status.label,
        "attempts": message.attempts,
        "webhook_message_id": message.webhook_message_id,
        "last_error": message.last_error,
        "created_at": utc_iso(message.created_at),
        "sent_at": utc_iso(message.sent_at),
        "send_at": utc_iso(message.send_at),
        "encoding": message.encoding,
        "segments": message.segments,
        "delivery_status": message.delivery_status.value if message.delivery_status else None,
        "delivered_at": utc_iso(message.delivered_at),
        "error_code": message.error_code,
    }


def utc_iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, whatever the database session's time zone (a naive time is taken as UTC)."""
    if value is None:
        return None
    return (value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)).isoformat()
