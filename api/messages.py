"""Messages: create, inspect, retry, and the sent and failed lists."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from uuid import UUID

from flask_smorest import Blueprint

from api import auth, runtime
from api.docs import ERROR_RESPONSES
from api.schemas import MessagePageSchema, MessageSchema, NewMessageSchema, PageQuerySchema, encode_cursor
from messaging import store
from messaging.errors import CacheUnavailable, MessageNotFound, MessageNotRetryable
from messaging.models import Message, Status

blp = Blueprint("messages", __name__, url_prefix="/messaging", description="Messages and their delivery.")
blp.before_request(auth.require_token)

PAGE_RESPONSES = (400, 401, 503)


def _document(*statuses: int):
    def decorate(view):
        for status in statuses:
            view = blp.alt_response(status, **ERROR_RESPONSES[status])(view)
        return view

    return decorate


@blp.route("/sent", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query", error_status_code=400, as_kwargs=True)
@blp.response(200, MessagePageSchema)
@_document(*PAGE_RESPONSES)
def sent(**query):
    """Sent messages, newest `sent_at` first (ties by id)."""
    return _page(Status.SENT, **query)


@blp.route("/failed", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query", error_status_code=400, as_kwargs=True)
@blp.response(200, MessagePageSchema)
@_document(*PAGE_RESPONSES)
def failed(**query):
    """Failed messages, most recently failed first (ties by id)."""
    return _page(Status.FAILED, **query)


@blp.route("/messages", methods=["POST"])
@blp.arguments(NewMessageSchema, error_status_code=422)
@blp.response(201, MessageSchema)
@_document(401, 413, 422, 503)
def create(new):
    """Queue a message for sending; it goes out in a later batch, oldest first."""
    return store.insert(runtime().pool, new["recipient_phone_number"], new["content"])


@blp.route("/messages/<message_id>", methods=["GET"])
@blp.response(200, MessageSchema)
@_document(401, 404, 503)
def get(message_id: str):
    """One message; delivery details come from the Redis cache when it has them."""
    message = _find(message_id)
    return _with_cached_delivery(message)


@blp.route("/messages/<message_id>/retry", methods=["POST"])
@blp.response(200, MessageSchema)
@_document(401, 404, 409, 503)
def retry(message_id: str):
    """Put a failed message back to pending with its attempts reset."""
    message = _find(message_id)
    retried = store.retry_failed(runtime().pool, message.id)
    if retried is None:
        raise MessageNotRetryable(f"Message {message.id} is {message.status.label}; only a failed message can be retried.")
    return retried


def _page(status: Status, *, limit: int, offset: int, cursor: str | None = None, after=None) -> dict:
    pool = runtime().pool
    messages = store.page(pool, status, limit=limit, offset=offset, after=after)
    next_cursor = None
    if len(messages) == limit:
        last = messages[-1]
        next_cursor = encode_cursor(_sort_value(status, last), last.id)
    return {
        "data": messages,
        "pagination": {
            "limit": limit,
            "offset": offset,
            "total": store.count_in_status(pool, status),
            "next_cursor": next_cursor,
        },
    }


def _sort_value(status: Status, message: Message) -> datetime:
    return message.sent_at if status is Status.SENT else message.updated_at


def _find(message_id: str) -> Message:
    try:
        parsed = UUID(message_id)
    except ValueError:
        raise MessageNotFound(f"No message with id {message_id!r}.") from None
    message = store.get(runtime().pool, parsed)
    if message is None:
        raise MessageNotFound(f"No message with id {message_id}.")
    return message


def _with_cached_delivery(message: Message) -> Message:
    try:
        entry = runtime().cache.sent_entry(message.id)
    except CacheUnavailable:
        return message  # PostgreSQL has the record too; the cache only answers faster
    if not entry:
        return message
    try:
        sent_at = datetime.fromisoformat(str(entry.get("sent_at")))
    except ValueError:
        sent_at = message.sent_at
    return dataclasses.replace(
        message,
        status=Status.SENT,
        sent_at=sent_at,
        webhook_message_id=entry.get("messageId") or message.webhook_message_id,
    )
