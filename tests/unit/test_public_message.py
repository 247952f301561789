"""The message object is rendered once (messaging/domain/public.py): the API's schema documents exactly its
fields and dumps through it, so an API answer and a status callback's `data` cannot drift apart."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from api.schemas import MessageSchema
from messaging.domain.message import Message, Status
from messaging.domain.public import message_object
from messaging.domain.receipts import DeliveryStatus

ISTANBUL = timezone(timedelta(hours=3))


def a_message(**changes) -> Message:
    values = dict(
        id=uuid.UUID("5f0c6f2e-2a43-4c0e-9b9e-0c5b7f7b2d11"), content="hi", recipient_phone_number="+905321234567",
        status=Status.SENT, attempts=1, webhook_message_id="provider-1", last_error=None,
        created_at=datetime(2026, 12, 3, 12, 0, tzinfo=ISTANBUL), sent_at=datetime(2026, 12, 3, 9, 0, 1),
        updated_at=datetime(2026, 12, 3, 9, 0, 1, tzinfo=timezone.utc), delivery_status=DeliveryStatus.DELIVERED,
        delivered_at=datetime(2026, 12, 3, 9, 0, 3, 500000, tzinfo=timezone.utc), error_code=None,
    )  # fmt: skip
    return Message(**{**values, **changes})


def test_the_schema_documents_exactly_the_fields_the_object_has():
    assert list(MessageSchema().fields) == list(message_object(a_message()))


def test_the_schema_dumps_through_the_one_rendering_one_or_many():
    message = a_message()
    assert MessageSchema().dump(message) == message_object(message)
    assert MessageSchema(many=True).dump([message, message]) == [message_object(message)] * 2
    assert MessageSchema().dump([message], many=True) == [message_object(message)]


def test_times_are_utc_whatever_the_session_time_zone_and_the_values_are_json():
    rendered = message_object(a_message())
    assert rendered["created_at"] == "2026-12-03T09:00:00+00:00", "Istanbul noon is 09:00 UTC"
    assert rendered["sent_at"] == "2026-12-03T09:00:01+00:00", "a naive time is taken as UTC"
    assert (rendered["status"], rendered["delivery_status"], rendered["send_at"]) == ("sent", "delivered", None)
    assert json.loads(json.dumps(rendered)) == rendered
