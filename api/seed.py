"""GET /messaging/sent as the Go service answered it, so that its clients keep working.

With `SENT_RESPONSE_FORMAT=seed` (or `?format=seed`) the call answers a bare JSON array
of messages with the Go struct's field names (it had no JSON tags), `limit` is required,
and errors are `{"success": false, "error": "..."}`. `?format=standard` gives our shape
whatever the setting, so that clients can move one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import Schema, fields, validate
from webargs.flaskparser import abort

from api import settings
from api.paging import MessagePageSchema, SentPageQuerySchema
from api.schemas import ApiErrorSchema
from messaging.domain.message import Message

SEED = "seed"
STANDARD = "standard"
SENT_ENDPOINT = "messages.sent"
LIMIT_REQUIRED = "Missing data for required field."


def wanted() -> bool:
    """Whether this request is a GET /messaging/sent to answer as the Go service did."""
    if request.endpoint != SENT_ENDPOINT:
        return False
    asked = request.args.get("format")
    if asked in (SEED, STANDARD):
        return asked == SEED
    return settings().sent_response_format == SEED  # also when `format` is invalid: its 400 follows the setting


def require_limit() -> None:
    """The Go service's validator required `limit` (1 to 100); our shape defaults it to 20."""
    if "limit" not in request.args:
        abort(400, messages={"query": {"limit": [LIMIT_REQUIRED]}})


def sent_list(messages: list[Message]) -> ResponseReturnValue:
    """The bare array the Go service answered (a Response: flask-smorest passes it through)."""
    return jsonify(SeedMessageSchema(many=True).dump(messages))


def error_body(message: str, field_messages: dict | None) -> dict:
    """The Go service's error: one string, here with the fields at fault."""
    details = "; ".join(f"{name}: {' '.join(map(str, problems))}" for name, problems in (field_messages or {}).items())
    return {"success": False, "error": f"{message} {details}" if details else message}


class GoTime(fields.DateTime):
    """A time as Go's encoding/json writes time.Time (RFC 3339, fraction without trailing zeros), in UTC."""

    def _serialize(self, value, attr, obj, **kwargs):
        if not isinstance(value, datetime):
            return None
        moment = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
        return f"{moment:%Y-%m-%dT%H:%M:%S}{fraction}Z"


class SeedMessageSchema(Schema):
    """A sent message as the Go service listed it (`SENT_RESPONSE_FORMAT=seed` or `?format=seed`)."""

    ID = fields.UUID(attribute="id", required=True, metadata={"example": "5f0c6f2e-2a43-4c0e-9b9e-0c5b7f7b2d11"})
    Content = fields.String(attribute="content", required=True, metadata={"example": "Your verification code is 9321."})
    RecipientPhoneNumber = fields.String(
        attribute="recipient_phone_number", required=True, metadata={"example": "+905311112233"}
    )
    SendingStatus = fields.Integer(
        attribute="status",
        required=True,
        metadata={"example": 1, "description": "The Go service's number: 0 pending, 1 sent, 2 failed."},
    )
    CreatedAt = GoTime(attribute="created_at", required=True, metadata={"example": "2024-12-22T09:13:47Z"})
    UpdatedAt = GoTime(
        attribute="updated_at",
        required=True,
        metadata={"example": "2024-12-22T09:15:00.5Z", "description": "When it was sent (its last change)."},
    )


class SeedErrorSchema(Schema):
    """An error of GET /messaging/sent in the Go service's shape."""

    success = fields.Boolean(required=True, metadata={"example": False})
    error = fields.String(
        required=True,
        metadata={"example": "Invalid query parameters. limit: Missing data for required field."},
    )


class SentQuerySchema(SentPageQuerySchema):
    """The paging parameters, and the shape of the answer."""

    response_format = fields.String(
        data_key="format",
        validate=validate.OneOf([STANDARD, SEED]),
        metadata={
            "description": "`seed`: answer as the Go service did (a bare array, its field names, `limit` "
            'required, errors as `{"success": false, "error"}`); `standard`: this shape. Default: the '
            "server's SENT_RESPONSE_FORMAT (`standard` unless set).",
        },
    )


def document_both_shapes(blp) -> Callable:
    """The OpenAPI document of GET /messaging/sent: either shape, for its answer and its errors."""
    either_error = {"oneOf": [ApiErrorSchema, SeedErrorSchema]}
    json_schema = lambda schema: {"content": {"application/json": {"schema": schema}}}  # noqa: E731
    return blp.doc(
        responses={
            200: json_schema({"oneOf": [MessagePageSchema, {"type": "array", "items": SeedMessageSchema}]}),
            400: json_schema(either_error),
            401: json_schema(either_error),
            403: json_schema(either_error),
            503: json_schema(either_error),
        }
    )
