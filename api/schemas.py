"""Marshmallow schemas: they validate requests and, through flask-smorest, write the OpenAPI document."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import ClassVar
from uuid import UUID

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from api import cursors
from messaging import encoding
from messaging.models import Status, Trigger
from messaging.submission import SCHEDULE_AHEAD

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_OFFSET = 2**31 - 1
MAX_CONTENT = 160
E164 = r"^\+[1-9][0-9]{7,14}$"
# PostgreSQL text cannot hold NUL; written for both Python and ECMA-262 (the document's regex dialect).
NO_NUL = r"^[^\u0000]*$"
# What Python's str.isspace() calls whitespace, spelled out: ECMA-262's \s is not quite the same set.
WHITESPACE = r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# No NUL, and at least one character that is not whitespace. Each part matches what the next cannot,
# so a mismatch never backtracks through the whole text (a 64 KiB body is checked in linear time).
NOT_BLANK = rf"^[{WHITESPACE}]*[^\u0000{WHITESPACE}][^\u0000]*$"
QUERY_INTEGER = re.compile(r"-?[0-9]{1,19}")

EXAMPLE_ID = "5f0c6f2e-2a43-4c0e-9b9e-0c5b7f7b2d11"
EXAMPLE_PHONE = "+905321234567"
EXAMPLE_CONTENT = "Your verification code is 482913."
EXAMPLE_SENT_AT = datetime(2026, 11, 28, 9, 2, 0, 120000, tzinfo=timezone.utc)
NOT_A_CURSOR = "Not a cursor this list returned."

def _a_week_ahead() -> str:
    """A send_at that works when tried from the docs: inside the window for weeks after the process starts."""
    day = datetime.now(timezone.utc).date() + timedelta(days=7)
    return f"{day.isoformat()}T09:00:00+03:00"


EXAMPLE_SEND_AT = _a_week_ahead()
MAX_BULK_RETRY = 10_000
DEFAULT_BULK_RETRY = 1_000
ATTEMPT_CURSOR = r"^[0-9]{1,18}$"


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


class JsonBoolean(fields.Boolean):
    """true or false, not the 1, "yes" or "on" marshmallow also takes."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class ZonedDateTime(fields.AwareDateTime):
    """ISO 8601 with a time zone, read as given; anything else gets one message that says how to write it."""

    ERROR = "Must be an ISO 8601 date and time with a time zone, such as 2026-12-01T09:00:00+03:00."

    def __init__(self, **kwargs):
        super().__init__(format="iso", error_messages={"invalid": self.ERROR, "invalid_awareness": self.ERROR}, **kwargs)


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
        metadata={
            "example": "sent",
            "description": "`sending` means claimed by a batch and being delivered; `canceled`, canceled while pending.",
        },
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
        metadata={
            "example": None,
            "description": "Why the last delivery attempt failed, if it did; null again once a failed message is retried.",
        },
    )
    created_at = UtcDateTime(required=True, metadata={"example": "2026-11-28T09:00:00+00:00"})
    sent_at = UtcDateTime(required=True, allow_none=True, metadata={"example": "2026-11-28T09:02:00.120000+00:00"})
    send_at = UtcDateTime(
        required=True,
        allow_none=True,
        metadata={"example": None, "description": "When a scheduled message is due; null when it was due at once."},
    )
    encoding = fields.String(
        required=True,
        validate=validate.OneOf([encoding.GSM_7, encoding.UCS_2]),
        metadata={
            "example": encoding.GSM_7,
            "description": "GSM-7 when every character is in the GSM 03.38 alphabet (its extension "
            "characters such as `€ [ ] { } ^ ~ | \\` take two of the 160 septets), else UCS-2.",
        },
    )
    segments = fields.Integer(
        required=True,
        metadata={
            "example": 1,
            "description": "SMS parts the content takes, as providers bill it: GSM-7 160 alone or 153 per part, "
            "UCS-2 70 or 67 UTF-16 units (a character beyond the BMP, such as an emoji, takes two).",
        },
    )


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
}


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
        validate=[
            validate.Length(min=1, max=MAX_CONTENT, error=f"Must be 1 to {MAX_CONTENT} characters."),
            FullMatch(NOT_BLANK, error="Must hold a character that is not whitespace, and no NUL."),
        ],
        metadata={
            "example": EXAMPLE_CONTENT,
            "description": f"1 to {MAX_CONTENT} characters (Unicode code points), not only whitespace.",
        },
    )
    send_at = ZonedDateTime(
        metadata={
            "example": EXAMPLE_SEND_AT,
            "description": f"Optional: send no earlier than this time, ISO 8601 with a time zone, from now to "
            f"{SCHEDULE_AHEAD.days} days ahead. Without it the message is due at once.",
        },
    )


class PageQuerySchema(Schema):
    """`limit`/`offset` (seed compatible) or a keyset `cursor` taken from `next_cursor`."""

    class Meta:
        unknown = EXCLUDE

    listing: ClassVar[str]  # the list whose cursors this query takes

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
    # No example: Swagger UI would send it, and only a cursor this list handed out names a page.
    cursor = fields.String(
        validate=FullMatch(cursors.PATTERN, error=NOT_A_CURSOR),
        metadata={
            "description": "`pagination.next_cursor` of the previous page of this list: the next page at the "
            "cost of the first one, at any depth. Treat it as opaque; any other value answers 400.",
        },
    )

    @post_load
    def decode_cursor(self, data, **kwargs):
        if "cursor" not in data:
            return data
        if data["offset"]:
            raise ValidationError("Use either offset or cursor, not both.", "cursor")
        try:
            cursor = cursors.decode(data.pop("cursor"), self.listing)
        except ValueError:
            raise ValidationError(NOT_A_CURSOR, "cursor") from None
        if isinstance(cursor, cursors.Offset):
            data["offset"] = cursor.offset
        else:
            data["after"] = cursor
        return data


class SentPageQuerySchema(PageQuerySchema):
    listing = Status.SENT.label


class FailedPageQuerySchema(PageQuerySchema):
    listing = Status.FAILED.label


class PaginationSchema(Schema):
    limit = fields.Integer(required=True, metadata={"example": 20})
    offset = fields.Integer(
        required=True, metadata={"example": 0, "description": "Rows skipped before this page (0 for keyset pages)."}
    )
    total = fields.Integer(
        required=True,
        metadata={
            "example": 42,
            "description": "Messages in this list: exact up to 10,000; above that, counted at most 10 s ago (20 times what counting takes, if longer).",
        },
    )
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "Pass as `cursor` for the next page; null on the last page.",
            "example": cursors.encode(cursors.Keyset(EXAMPLE_SENT_AT, UUID(EXAMPLE_ID)), Status.SENT.label),
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
    canceled = fields.Integer(required=True, metadata={"example": 3})


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


class AttemptQuerySchema(Schema):
    """`limit` and a `cursor` taken from `next_cursor`."""

    class Meta:
        unknown = EXCLUDE

    limit = QueryInteger(
        load_default=DEFAULT_PAGE_SIZE,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Page size, 1 to {MAX_PAGE_SIZE}.", "example": DEFAULT_PAGE_SIZE},
    )
    cursor = fields.String(
        validate=FullMatch(ATTEMPT_CURSOR, error="Not a cursor returned by this API."),
        metadata={"description": "`pagination.next_cursor` of the previous page. Treat it as opaque.", "example": "1041"},
    )


class AttemptSchema(Schema):
    """One delivery attempt: one POST to the webhook, or a claim that expired while sending."""

    attempt = fields.Integer(
        required=True,
        metadata={"example": 1, "description": "The message's attempt count at this attempt (1 again after a manual retry)."},
    )
    trigger = fields.Function(
        lambda attempt: attempt.trigger.value,
        required=True,
        metadata={
            "type": "string",
            "enum": [trigger.value for trigger in Trigger],
            "example": Trigger.SCHEDULED.value,
            "description": "`scheduled`: the message's first send; `retry`: after a failed attempt; "
            "`manual`: after an operator's retry.",
        },
    )
    started_at = UtcDateTime(required=True, metadata={"example": "2026-11-28T09:02:00.105000+00:00"})
    duration_ms = fields.Float(
        required=True,
        allow_none=True,
        metadata={"example": 14.8, "description": "Null when the outcome is unknown (the claim expired while sending)."},
    )
    http_status = fields.Integer(
        required=True, allow_none=True, metadata={"example": 202, "description": "Null when no answer came."}
    )
    error_class = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "example": None,
            "description": "What went wrong: `timeout`, `connection`, `http_status`, `request`, or "
            "`claim_expired` (the worker was lost mid-send); null on success.",
        },
    )
    retry_after_seconds = fields.Float(
        required=True, allow_none=True, metadata={"example": None, "description": "The answer's Retry-After, in seconds."}
    )
    answer = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "example": '{"message": "Accepted", "messageId": "67f2f8a8-ea58-4ed0-a6f9-ff217df4d849"}',
            "description": "The first 1 KiB of the answer's body.",
        },
    )


class AttemptPaginationSchema(Schema):
    limit = fields.Integer(required=True, metadata={"example": 20})
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Pass as `cursor` for the next page; null on the last page.", "example": None},
    )


class AttemptPageSchema(Schema):
    data = fields.List(fields.Nested(AttemptSchema), required=True)
    pagination = fields.Nested(AttemptPaginationSchema, required=True)


class BulkRetrySchema(Schema):
    """Which failed messages to retry; every property is optional, and none means all (up to `limit`)."""

    class Meta:
        unknown = RAISE

    error_messages = {"type": "Must be a JSON object."}

    failed_after = ZonedDateTime(
        metadata={"example": "2026-11-28T00:00:00Z", "description": "Failed at or after this time (ISO 8601 with a zone)."}
    )
    failed_before = ZonedDateTime(
        metadata={"example": "2026-11-29T00:00:00Z", "description": "Failed before this time (ISO 8601 with a zone)."}
    )
    error_contains = Text(
        validate=[validate.Length(min=1, max=500, error="Must be 1 to 500 characters.")],
        metadata={"example": "HTTP 503", "description": "Text the message's `last_error` contains, in any case."},
    )
    limit = fields.Integer(
        strict=True,
        load_default=DEFAULT_BULK_RETRY,
        validate=validate.Range(min=1, max=MAX_BULK_RETRY),
        metadata={
            "example": DEFAULT_BULK_RETRY,
            "description": f"At most this many, the most recently failed first: 1 to {MAX_BULK_RETRY:,}.",
        },
    )
    dry_run = JsonBoolean(
        load_default=False, metadata={"example": False, "description": "Only count the matching messages."}
    )


class BulkRetryResultSchema(Schema):
    matched = fields.Integer(required=True, metadata={"example": 42, "description": "Failed messages the filter took."})
    retried = fields.Integer(
        required=True, metadata={"example": 42, "description": "Of those, how many are pending again (0 on a dry run)."}
    )
    dry_run = fields.Boolean(required=True, metadata={"example": False})


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
