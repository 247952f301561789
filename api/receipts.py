"""Delivery receipts from the provider: `POST /messaging/receipts`, signed with Standard Webhooks.

It needs no API_TOKEN (the provider has the signing secret, not our token), and answers 404 while
RECEIPT_SIGNING_SECRET is empty, so no unsigned receipt is ever taken.
"""

from __future__ import annotations

import logging
from flask import request
from marshmallow import EXCLUDE, Schema, fields, validate
from standardwebhooks import Webhook, WebhookVerificationError

from api import runtime, settings
from api.blueprint import Blueprint
from api.docs import ERROR_RESPONSES, error_example
from api.fields import Text, UtcDateTime, ZonedDateTime
from api.schemas import ApiErrorSchema
from messaging.domain import receipts
from messaging.domain.receipts import Outcome, ProviderStatus, Receipt
from messaging.errors import ReceiptNotSigned, ReceiptsOff
from messaging.logs import fields as log_fields

log = logging.getLogger(__name__)

blp = Blueprint("receipts", __name__, url_prefix="/messaging", description="Delivery receipts from the provider.")

PATH = "/messaging/receipts"


class ReceiptBodySchema(Schema):
    """A delivery receipt as the provider sends it; other properties are ignored."""

    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": "Must be a JSON object."}

    messageId = Text(
        required=True,
        validate=[validate.Length(min=1, max=255)],
        metadata={"example": "67f2f8a8-ea58-4ed0-a6f9-ff217df4d849", "description": "What the provider answered to our POST."},
    )
    status = fields.String(
        required=True,
        validate=validate.OneOf([status.value for status in ProviderStatus]),
        metadata={"example": "delivered"},
    )
    error_code = Text(validate=[validate.Length(max=64)], allow_none=True, metadata={"example": None})
    timestamp = ZonedDateTime(allow_none=True, metadata={"example": "2026-11-28T09:02:03Z", "description": "When it happened."})


class ReceiptAnswerSchema(Schema):
    outcome = fields.String(
        required=True,
        validate=validate.OneOf([outcome.value for outcome in Outcome]),
        metadata={
            "example": "applied",
            "description": "`applied`: the message's first final receipt; `duplicate`: it says what the message "
            "says already; `ignored`: a later, different one, kept in the history only; `kept`: no message "
            "is recorded sent with this messageId yet (202).",
        },
    )


class ReceiptEntrySchema(Schema):
    """One receipt the provider sent about a message, and what became of it."""

    status = fields.String(required=True, metadata={"example": "delivered"})
    error_code = fields.String(required=True, allow_none=True, metadata={"example": None})
    reported_at = UtcDateTime(required=True, allow_none=True, metadata={"example": "2026-11-28T09:02:03+00:00"})
    received_at = UtcDateTime(required=True, metadata={"example": "2026-11-28T09:02:03.310000+00:00"})
    outcome = fields.String(required=True, metadata={"example": "applied"})


class CallbackEventSchema(Schema):
    """One change of the message's state, and where its status callback stands."""

    id = fields.UUID(
        required=True,
        metadata={"example": "0b7e3c1e-5d55-4c43-9d1b-2f4f3b7c9a10", "description": "The webhook-id of every POST of it."},
    )
    type = fields.String(required=True, metadata={"example": "message.delivered"})
    occurred_at = UtcDateTime(required=True, metadata={"example": "2026-11-28T09:02:03.400000+00:00"})
    callback_state = fields.String(
        required=True,
        metadata={
            "example": "delivered",
            "description": "`pending`: not answered 2xx yet (tried again after a backoff); `delivered`; `failed`: "
            "STATUS_CALLBACK_MAX_ATTEMPTS used, or the message was deleted first.",
        },
    )
    attempts = fields.Integer(required=True, metadata={"example": 1})
    last_http_status = fields.Integer(required=True, allow_none=True, metadata={"example": 200})
    last_error = fields.String(required=True, allow_none=True, metadata={"example": None})
    delivered_at = UtcDateTime(required=True, allow_none=True, metadata={"example": "2026-11-28T09:02:03.520000+00:00"})


class EventPageSchema(Schema):
    data = fields.List(fields.Nested(ReceiptEntrySchema), required=True, metadata={"description": "The receipts."})
    callbacks = fields.List(
        fields.Nested(CallbackEventSchema),
        required=True,
        metadata={"description": "The message's events, POSTed to STATUS_CALLBACK_URL (none while callbacks are off)."},
    )


@blp.route("/receipts", methods=["POST"])
@blp.doc(security=[])
@blp.arguments(ReceiptBodySchema, location="json", error_status_code=422, example={"messageId": "67f2f8a8-ea58-4ed0-a6f9-ff217df4d849", "status": "delivered"})
@blp.response(200, ReceiptAnswerSchema, description="Applied, or a duplicate, or a later receipt kept in the history only.")
@blp.alt_response(202, schema=ReceiptAnswerSchema, description="Kept: no message is recorded sent with this messageId yet.")
@blp.alt_response(
    401, schema=ApiErrorSchema, description="A missing or wrong signature, or a webhook-timestamp more than 5 minutes off.",
    example=error_example("unauthorized", ReceiptNotSigned.__doc__),
)
@blp.alt_response(
    403, schema=ApiErrorSchema, description=ERROR_RESPONSES[403]["description"], example=ERROR_RESPONSES[403]["example"]
)
@blp.alt_response(
    404, schema=ApiErrorSchema, description="Receipts are off: RECEIPT_SIGNING_SECRET is empty.",
    example=error_example("not_found", ReceiptsOff.__doc__),
)
@blp.alt_response(413, schema=ApiErrorSchema, **ERROR_RESPONSES[413])
@blp.alt_response(
    422, schema=ApiErrorSchema, description="A body without `messageId` or with a `status` other than delivered, undelivered or failed.",
    example=error_example("validation_error", "Invalid request body.", {"status": ["Must be one of: delivered, undelivered, failed."]}),
)
@blp.alt_response(503, schema=ApiErrorSchema, description="PostgreSQL is unreachable.", example=error_example("unavailable", "postgresql is unavailable."))
def take(body):
    """A delivery receipt from the provider, signed with Standard Webhooks (RECEIPT_SIGNING_SECRET).

    Needs no bearer token. The first final receipt of a message sets its `delivery_status`; a
    duplicate changes nothing; a later, different one is kept in the message's history only. A
    receipt for a messageId no message is recorded with yet answers 202 and is applied when
    the message is; one nobody claims within RECEIPT_ORPHAN_SECONDS is dropped.
    """
    receipt = Receipt(body["messageId"], ProviderStatus(body["status"]), body.get("error_code"), body.get("timestamp"))
    taken = runtime().receipts.take(receipt)
    since_sent = (taken.received_at - taken.sent_at).total_seconds() if taken.sent_at else 0.0
    runtime().counters.receipt(receipt.status.value, since_sent)
    log.info(
        "event=receipt %s",
        log_fields(webhook_message_id=receipt.webhook_message_id, status=receipt.status.value, outcome=taken.outcome.value),
    )
    return {"outcome": taken.outcome.value}, receipts.answer_status(taken.recorded_sent)


def verify_signature() -> None:
    """A before_request hook of this blueprint: 404 while receipts are off, 401 unless Standard Webhooks verifies
    the exact bytes received with one of the secrets, within 5 minutes of webhook-timestamp."""
    secrets = settings().receipt_signing_secrets
    if not secrets:
        raise ReceiptsOff()
    body, headers = request.get_data(), dict(request.headers)
    for secret in secrets:
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
            return
        except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature, or a body not UTF-8
            continue
    raise ReceiptNotSigned()


blp.before_request(verify_signature)
