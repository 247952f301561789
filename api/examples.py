"""The examples of the OpenAPI document: Swagger UI sends them as they are, so each gives a real answer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EXAMPLE_ID = "5f0c6f2e-2a43-4c0e-9b9e-0c5b7f7b2d11"
EXAMPLE_PHONE = "+905321234567"
EXAMPLE_CONTENT = "Your verification code is 482913."
EXAMPLE_SENT_AT = datetime(2026, 11, 28, 9, 2, 0, 120000, tzinfo=timezone.utc)


def _a_week_ahead() -> str:
    """A send_at that works when tried from the docs: inside the window for weeks after the process starts."""
    day = datetime.now(timezone.utc).date() + timedelta(days=7)
    return f"{day.isoformat()}T09:00:00+03:00"


EXAMPLE_SEND_AT = _a_week_ahead()

# What create and retry answer: the message waits for a batch, nothing tried yet.
PENDING_MESSAGE_EXAMPLE = {
    "id": EXAMPLE_ID,
    "content": EXAMPLE_CONTENT,
    "recipient_phone_number": EXAMPLE_PHONE,
    "status": "pending",
    "attempts": 0,
    "webhook_message_id": None,
    "last_error": None,
    "created_at": "2026-11-28T09:00:00+00:00",
    "sent_at": None,
    "send_at": None,
    "encoding": "GSM-7",
    "segments": 1,
    "delivery_status": None,
    "delivered_at": None,
    "error_code": None,
}
