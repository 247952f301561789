"""Marshmallow schemas: they validate requests and, through flask-smorest, write the OpenAPI document."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from api import cursors
from messaging.models import Status

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_OFFSET = 2**31 - 1
MAX_CONTENT = 160
E164 = r"^\+[1-9][0-9]{7,14}$"
# PostgreSQL text cannot hold NUL; written for both Python and ECMA-262 (the document's regex dialect).
NO_NUL = r"^[^\u0000]*$"
QUERY_INTEGER = re.compile(r"-?[0-9]{1,19}")

EXAMPLE_ID = "5f0c6f2e-2a43-4c0e-9b9e-0c5b7f7b2d11"
EXAMPLE_PHONE = "+905321234567"
EXAMPLE_CONTENT = "Your verification code is 482913."


class FullMatch(validate.Regexp):
    """A Regexp that must match the whole value: `$` in `re.match` also matches before a final newline."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Text(fields.String):
    """A string PostgreSQL can store: valid Unicode (no lone surrogates from `\\ud800` escapes), no NUL."""

    def __init__(self, **kwargs):
        validators = list(kwargs.pop("validate", []))
        if not any(isinstance(validator, validate.Regexp) for validator in validators):
            # A pattern of its own (E.164) already excludes NUL; the document shows one pattern per field.
            validators.append(FullMatch(NO_NUL, error="Must not contain NUL characters."))
        super().__init__(validate=validators, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("Must be valid Unicode text (no unpaired surrogates).") from None
        return text


class QueryInteger(fields.Integer):
    """An integer written in ASCII digits: not `1.0`, ` 5`, `1_0`, `١` or 5,000 digits, which `int()` takes."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not QUERY_INTEGER.fullmatch(value):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC, whatever the database session's time zone."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, datetime):
            value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return super()._serialize(value, attr, obj, **kwargs)


class StatusField(fields.String):
    def __init__(self, **kwargs):
        super().__init__(validate=validate.OneOf([status.label for status in Status]), **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return value.label if isinstance(value, Status) else value


class MessageSchema(Schema):
    """A message and its delivery state."""

    id = fields.UUID(required=True, metadata={"example": EXAMPLE_ID})
    content = fields.String(required=True, metadata={"example": EXAMPLE_CONTENT})
    recipient_phone_number = fields.String(required=True, metadata={"example": EXAMPLE_PHONE})
    status = StatusField(
        required=True,
        metadata={"example": "sent", "description": "`sending` means claimed by a batch and being delivered."},
    )
    attempts = fields.Integer(required=True, metadata={"example": 1, "description": "Deliveries tried so far."})
    webhook_message_id = fields.String(
        required=True,
        allow_none=True,
        metadata={"example": "67f2f8a8-ea58-4ed0-a6f9-ff217df4d849", "description": "The provider's `messageId`."},
    )
    last_error = fields.String(
        required=True,
        allow_none=True,
        metadata={"example": None, "description": "Why the last delivery attempt failed, if it did."},
    )
    created_at = UtcDateTime(required=True, metadata={"example": "2026-11-28T09:00:00+00:00"})
    sent_at = UtcDateTime(required=True, allow_none=True, metadata={"example": "2026-11-28T09:02:00.120000+00:00"})


class NewMessageSchema(Schema):
    """A message to send: one SMS segment to an E.164 number. Other properties are rejected."""

    class Meta:
        unknown = RAISE

    error_messages = {"type": "Must be a JSON object."}

    recipient_phone_number = Text(
        required=True,
        validate=[FullMatch(E164, error="Must be an E.164 number: + then 8 to 15 digits, the first not 0.")],
        metadata={"example": EXAMPLE_PHONE},
    )
    content = Text(
        required=True,
        validate=[validate.Length(min=1, max=MAX_CONTENT, error=f"Must be 1 to {MAX_CONTENT} characters.")],
        metadata={"example": EXAMPLE_CONTENT, "description": f"1 to {MAX_CONTENT} characters (Unicode code points)."},
    )


class PageQuerySchema(Schema):
    """`limit`/`offset` (seed compatible) or a keyset `cursor` taken from `next_cursor`."""

    class Meta:
        unknown = EXCLUDE

    limit = QueryInteger(
        load_default=DEFAULT_PAGE_SIZE,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Page size, 1 to {MAX_PAGE_SIZE}.", "example": DEFAULT_PAGE_SIZE},
    )
    offset = QueryInteger(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_OFFSET),
        metadata={
            "description": "Rows to skip. Its cost grows with the offset; prefer `cursor` for deep pages. "
            "Not with `cursor` (400), except 0.",
            "example": 0,
        },
    )
    cursor = fields.String(
        validate=FullMatch(cursors.PATTERN, error="Not a cursor returned by this API."),
        metadata={
            "description": "`pagination.next_cursor` of the previous page: the next page at the cost of the "
            "first one, at any depth. Treat it as opaque.",
            "example": "1764320520120000_5f0c6f2e2a434c0e9b9e0c5b7f7b2d11",
        },
    )

    @post_load
    def decode_cursor(self, data, **kwargs):
        if "cursor" not in data:
            return data
        if data["offset"]:
            raise ValidationError("Use either offset or cursor, not both.", "cursor")
        cursor = cursors.decode(data.pop("cursor"))
        if isinstance(cursor, cursors.Offset):
            data["offset"] = cursor.offset
        else:
            data["after"] = cursor
        return data


class PaginationSchema(Schema):
    limit = fields.Integer(required=True, metadata={"example": 20})
    offset = fields.Integer(
        required=True, metadata={"example": 0, "description": "Rows skipped before this page (0 for keyset pages)."}
    )
    total = fields.Integer(
        required=True,
        metadata={
            "example": 42,
            "description": "Messages in this list: exact up to 10,000; above that, counted at most 10 s ago.",
        },
    )
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "Pass as `cursor` for the next page; null on the last page.",
            "example": "1764320520120000_5f0c6f2e2a434c0e9b9e0c5b7f7b2d11",
        },
    )


class MessagePageSchema(Schema):
    data = fields.List(fields.Nested(MessageSchema), required=True)
    pagination = fields.Nested(PaginationSchema, required=True)


class SwitchSchema(Schema):
    enabled = fields.Boolean(required=True, metadata={"example": True})
    message = fields.String(required=True, metadata={"example": "Sending started; a batch runs now."})


class CountsSchema(Schema):
    pending = fields.Integer(required=True, metadata={"example": 40})
    sending = fields.Integer(required=True, metadata={"example": 2})
    sent = fields.Integer(required=True, metadata={"example": 118})
    failed = fields.Integer(required=True, metadata={"example": 1})


class BreakerSchema(Schema):
    """The circuit breaker toward the provider, shared by every worker."""

    state = fields.String(
        required=True,
        validate=validate.OneOf(["closed", "open", "half_open"]),
        metadata={"example": "open", "description": "`half_open`: one probe delivery decides."},
    )
    since = UtcDateTime(required=True, allow_none=True, metadata={"example": "2026-11-28T09:02:00+00:00"})
    why = fields.String(
        required=True,
        allow_none=True,
        metadata={"example": "10 of 10 deliveries in the last 300s failed; last: HTTP 503 Service Unavailable"},
    )
    reopens_at = UtcDateTime(
        required=True,
        allow_none=True,
        metadata={"example": "2026-11-28T09:02:30+00:00", "description": "Open: when one probe delivery may go."},
    )


class RateLimitSchema(Schema):
    per_second = fields.Float(
        required=True, metadata={"example": 50.0, "description": "Across every worker; 0 means no limit."}
    )
    burst = fields.Integer(required=True, metadata={"example": 1})
    paused_until = UtcDateTime(
        required=True,
        allow_none=True,
        metadata={"example": None, "description": "A provider's 429 Retry-After holds every worker until then."},
    )


class StatusSchema(Schema):
    enabled = fields.Boolean(required=True, metadata={"example": True})
    interval_seconds = fields.Float(required=True, metadata={"example": 120.0})
    batch_size = fields.Integer(required=True, metadata={"example": 2})
    counts = fields.Nested(CountsSchema, required=True)
    breaker = fields.Nested(BreakerSchema, required=True)
    rate_limit = fields.Nested(RateLimitSchema, required=True)


class ApiErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "validation_error"})
    message = fields.String(required=True, metadata={"example": "Invalid request body."})
    field_messages = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={
            "description": "Validation errors only: messages per field; `_body` is about the body as a whole.",
            "example": {"recipient_phone_number": ["Must be an E.164 number: + then 8 to 15 digits, the first not 0."]},
        },
    )


class ApiErrorSchema(Schema):
    """Every error answer: 4xx and 5xx alike."""

    error = fields.Nested(ApiErrorBodySchema, required=True)
