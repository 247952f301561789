"""Marshmallow schemas of messages, sending and errors: they validate requests and, through
flask-smorest, write the OpenAPI document. Pages of them are in api/paging.py."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, validate

from api.examples import EXAMPLE_CONTENT, EXAMPLE_ID, EXAMPLE_PHONE, EXAMPLE_SEND_AT
from api.fields import FullMatch, JsonBoolean, StatusField, Text, UtcDateTime, ZonedDateTime
from messaging.domain import content as content_rules
from messaging.domain import encoding
from messaging.domain.message import Trigger
from messaging.domain.public import message_object
from messaging.domain.receipts import DeliveryStatus

MAX_BULK_RETRY = 10_000
DEFAULT_BULK_RETRY = 1_000


class MessageSchema(Schema):
    """A message and its delivery state.

    The fields document the object (OpenAPI); the values come from messaging/domain/public.py, which
    also renders the status callbacks' `data`: one rendering for both (tests/unit/test_public_message.py).
    """

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        if self.many if many is None else many:
            return [message_object(message) for message in obj]
        return message_object(obj)

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
    delivery_status = fields.String(
        dump_only=True,
        required=True,
        allow_none=True,
        metadata={
            "type": "string",
            "nullable": True,
            "enum": [status.value for status in DeliveryStatus] + [None],
            "example": None,
            "description": "Whether it reached the phone, from the provider's first final delivery receipt: "
            "`delivered`, `undelivered` (the provider said undelivered or failed), or `expired` (no final "
            "receipt within RECEIPT_TIMEOUT_SECONDS of `sent_at`); null while none came.",
        },
    )
    delivered_at = UtcDateTime(
        required=True,
        allow_none=True,
        metadata={"example": None, "description": "When the provider says it was delivered; null unless `delivered`."},
    )
    error_code = fields.String(
        required=True,
        allow_none=True,
        metadata={"example": None, "description": "The provider's error code from the receipt applied, if it gave one."},
    )


class NewMessageSchema(Schema):
    """A message to send: one SMS segment to an E.164 number. Other properties are rejected."""

    class Meta:
        unknown = RAISE

    error_messages = {"type": "Must be a JSON object."}

    recipient_phone_number = Text(
        required=True,
        validate=[FullMatch(content_rules.E164, error=content_rules.NOT_E164)],
        metadata={"example": EXAMPLE_PHONE},
    )
    content = Text(
        required=True,
        validate=[
            validate.Length(min=1, max=content_rules.MAX_CHARACTERS, error=content_rules.WRONG_LENGTH),
            FullMatch(content_rules.NOT_BLANK, error=content_rules.BLANK),
        ],
        metadata={
            "example": EXAMPLE_CONTENT,
            "description": f"1 to {content_rules.MAX_CHARACTERS} characters (Unicode code points), not only whitespace.",
        },
    )
    send_at = ZonedDateTime(
        metadata={
            "example": EXAMPLE_SEND_AT,
            "description": f"Optional: send no earlier than this time, ISO 8601 with a time zone, from now to "
            f"{content_rules.SCHEDULE_AHEAD.days} days ahead. Without it the message is due at once.",
        },
    )


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


class BulkRetryLimitSchema(Schema):
    """How many a bulk retry takes at most, and whether it only counts them; its filter is the subclass's."""

    class Meta:
        unknown = RAISE

    error_messages = {"type": "Must be a JSON object."}

    limit = fields.Integer(
        strict=True,
        load_default=DEFAULT_BULK_RETRY,
        validate=validate.Range(min=1, max=MAX_BULK_RETRY),
        metadata={"example": DEFAULT_BULK_RETRY, "description": f"At most this many: 1 to {MAX_BULK_RETRY:,}."},
    )
    dry_run = JsonBoolean(load_default=False, metadata={"example": False, "description": "Only count what matches."})


class BulkRetrySchema(BulkRetryLimitSchema):
    """Which failed messages to retry; every property is optional, and none means all (up to `limit`)."""

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


class BulkRetryResultSchema(Schema):
    matched = fields.Integer(required=True, metadata={"example": 42, "description": "How many the filter took."})
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
