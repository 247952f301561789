"""Marshmallow schemas: they validate requests and, through flask-smorest, write the OpenAPI document."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone
from uuid import UUID

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from messaging.models import Status

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_OFFSET = 2**31 - 1
E164 = r"^\+[1-9][0-9]{7,14}$"


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC, whatever the database session's time zone."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, datetime):
            value = value.astimezone(timezone.utc)
        return super()._serialize(value, attr, obj, **kwargs)


class StatusField(fields.String):
    def __init__(self, **kwargs):
        super().__init__(validate=validate.OneOf([status.label for status in Status]), **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return value.label if isinstance(value, Status) else value


class MessageSchema(Schema):
    id = fields.UUID(metadata={"example": "5f0c6f2e-2a43-4c0e-9b9e-0c5b7f7b2d11"})
    content = fields.String(metadata={"example": "Your verification code is 482913."})
    recipient_phone_number = fields.String(metadata={"example": "+905321234567"})
    status = StatusField(metadata={"example": "sent"})
    attempts = fields.Integer(metadata={"example": 1})
    webhook_message_id = fields.String(allow_none=True, metadata={"example": "67f2f8a8-ea58-4ed0-a6f9-ff217df4d849"})
    last_error = fields.String(allow_none=True, metadata={"example": None})
    created_at = UtcDateTime(metadata={"example": "2026-11-28T09:00:00+00:00"})
    sent_at = UtcDateTime(allow_none=True, metadata={"example": "2026-11-28T09:02:00.120000+00:00"})


class NewMessageSchema(Schema):
    class Meta:
        unknown = RAISE

    recipient_phone_number = fields.String(
        required=True,
        validate=validate.Regexp(E164, error="Must be an E.164 number: + then 8 to 15 digits, the first not 0."),
        metadata={"example": "+905321234567"},
    )
    content = fields.String(
        required=True,
        validate=validate.Length(min=1, max=160, error="Must be 1 to 160 characters."),
        metadata={"example": "Your verification code is 482913."},
    )


class PageQuerySchema(Schema):
    """`limit`/`offset` (seed compatible) or a keyset `cursor` taken from `next_cursor`."""

    class Meta:
        unknown = EXCLUDE

    limit = fields.Integer(
        load_default=DEFAULT_PAGE_SIZE,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Page size, 1 to {MAX_PAGE_SIZE}."},
    )
    offset = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_OFFSET),
        metadata={"description": "Rows to skip. Cost grows with the offset; prefer `cursor` for deep pages."},
    )
    cursor = fields.String(
        load_default=None,
        metadata={"description": "`next_cursor` of the previous page: any depth at the cost of the first page."},
    )

    @post_load
    def decode_cursor(self, data, **kwargs):
        if data.get("cursor") is not None:
            if data.get("offset"):
                raise ValidationError("Use either offset or cursor, not both.", "cursor")
            data["after"] = decode_cursor(data["cursor"])
        return data


class PaginationSchema(Schema):
    limit = fields.Integer(metadata={"example": 20})
    offset = fields.Integer(metadata={"example": 0})
    total = fields.Integer(metadata={"example": 42})
    next_cursor = fields.String(
        allow_none=True, metadata={"description": "Pass as `cursor` for the next page; null on the last page."}
    )


class MessagePageSchema(Schema):
    data = fields.List(fields.Nested(MessageSchema))
    pagination = fields.Nested(PaginationSchema)


class SwitchSchema(Schema):
    enabled = fields.Boolean(metadata={"example": True})
    message = fields.String(metadata={"example": "Sending started."})


class CountsSchema(Schema):
    pending = fields.Integer()
    sending = fields.Integer()
    sent = fields.Integer()
    failed = fields.Integer()


class StatusSchema(Schema):
    enabled = fields.Boolean()
    interval_seconds = fields.Float(metadata={"example": 120.0})
    batch_size = fields.Integer(metadata={"example": 2})
    counts = fields.Nested(CountsSchema)


class ApiErrorBodySchema(Schema):
    code = fields.String(metadata={"example": "validation_error"})
    message = fields.String(metadata={"example": "Invalid query parameters."})
    fields = fields.Dict(metadata={"description": "Per-field messages, for validation errors."})


class ApiErrorSchema(Schema):
    error = fields.Nested(ApiErrorBodySchema)


def encode_cursor(sort_value: datetime, message_id: UUID) -> str:
    raw = f"{sort_value.isoformat()}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, message_id = raw.split("|")
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when, UUID(message_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValidationError("Not a cursor returned by this API.", "cursor") from None
