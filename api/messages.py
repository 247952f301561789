"""Messages: create (now or scheduled), inspect with their attempts, retry, cancel, and the sent and failed lists."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timezone
from uuid import UUID

from api import cursors, docs, runtime, seed
from api.blueprint import Blueprint
from api.docs import messaging_call
from api.examples import EXAMPLE_CONTENT, EXAMPLE_PHONE, EXAMPLE_SEND_AT, PENDING_MESSAGE_EXAMPLE
from api.paging import AttemptPageSchema, AttemptQuerySchema, FailedPageQuerySchema, MessagePageSchema
from api.receipts import EventPageSchema
from api.schemas import BulkRetryResultSchema, BulkRetrySchema, MessageSchema, NewMessageSchema
from messaging.domain import content
from messaging.domain.message import Message, Status
from messaging.errors import (
    CacheUnavailable,
    MessageNotCancelable,
    MessageNotFound,
    MessageNotRetryable,
    MessagingError,
)
from messaging.postgres.records import FailedFilter

blp = Blueprint("messages", __name__, url_prefix="/messaging", description="Messages and their delivery.")

# Messages of the demo data (sql/demo_data.sql), so that Swagger UI's Try it out gives a real answer
# under `make run` (tests/integration/test_api_document.py tries each example). The first message:
DEMO_MESSAGE_ID = "d6b8374e-fa68-5bb8-9315-679115aff80f"
# The one that failed after two attempts: it lists attempts, and it can be retried.
DEMO_FAILED_MESSAGE_ID = "7103b737-2731-5f5c-9ae2-a8aa384a22f7"
# The one sent and delivered: it lists a delivery receipt and two events, with status callbacks off too.
DEMO_DELIVERED_MESSAGE_ID = "6b530df7-89de-5b9e-b7ef-93fc6d92a8e8"
# The one scheduled a month after the load: still pending, so it can be canceled, when the rest are sent.
DEMO_SCHEDULED_MESSAGE_ID = "8ac93029-85e7-59a9-8851-106df84970b1"


def _message_id(example: str) -> dict:
    return {
        "in": "path",
        "name": "message_id",
        "required": True,
        "description": "The message's id, a UUID. Any other text answers 404, like an unknown id.",
        "schema": {"type": "string", "format": "uuid", "example": example},
    }


MESSAGE_ID = _message_id(DEMO_MESSAGE_ID)
FAILED_MESSAGE_ID = _message_id(DEMO_FAILED_MESSAGE_ID)
DELIVERED_MESSAGE_ID = _message_id(DEMO_DELIVERED_MESSAGE_ID)
SCHEDULED_MESSAGE_ID = _message_id(DEMO_SCHEDULED_MESSAGE_ID)


@blp.route("/sent", methods=["GET"])
@blp.arguments(seed.SentQuerySchema, location="query", error_status_code=400, as_kwargs=True)
@blp.response(200, MessagePageSchema, description="A page of sent messages, or in the Go service's shape a bare array.")
@messaging_call(blp, 400)
@seed.document_both_shapes(blp)
def sent(response_format: str | None = None, delivery_status: str | None = None, **query):
    """Sent messages, newest sent_at first (ties by id).

    Page with `limit` and `offset` (seed compatible), or with `cursor`: the
    `pagination.next_cursor` of the previous page, which costs the same at any depth.
    With `format=seed` (or the server's SENT_RESPONSE_FORMAT=seed) it answers as the
    Go service did: a bare array of `{ID, Content, RecipientPhoneNumber, SendingStatus,
    CreatedAt, UpdatedAt}`, `limit` required, errors as `{"success": false, "error"}`.
    With `delivery_status`, only the messages whose delivery receipts say so.
    """
    if seed.wanted():
        seed.require_limit()
        return seed.sent_list(_messages(Status.SENT, **query, delivery=delivery_status))
    return _page(Status.SENT, **query, delivery=delivery_status)


@blp.route("/failed", methods=["GET"])
@blp.arguments(FailedPageQuerySchema, location="query", error_status_code=400, as_kwargs=True)
@blp.response(200, MessagePageSchema, description="A page of failed messages.")
@messaging_call(blp, 400)
def failed(**query):
    """Failed messages, most recently failed first (ties by id).

    Paged like `/messaging/sent`. A failed message can be sent again with
    `POST /messaging/messages/{message_id}/retry`.
    """
    return _page(Status.FAILED, **query)


@blp.route("/failed/retry", methods=["POST"])
@blp.arguments(
    BulkRetrySchema,
    required=False,
    error_status_code=422,
    example={"failed_after": "2026-11-28T00:00:00Z", "error_contains": "HTTP 400", "limit": 1000},
)
@blp.response(200, BulkRetryResultSchema, description="How many failed messages matched, and went back to pending.")
@messaging_call(blp, 413, 422, documented=docs.BULK_RETRY_ERRORS)
def retry_failed(which):
    """Put failed messages back to pending with their attempts reset, in one statement.

    An optional filter picks them: failed in [`failed_after`, `failed_before`), `last_error`
    containing `error_contains`, at most `limit` (1 to 10,000; default 1,000), most recently
    failed first. No body takes every failed message, up to `limit`. With `dry_run` only
    counts. Call again while `matched` equals `limit`.
    """
    dry_run = which.pop("dry_run")
    result = runtime().records.retry_failed_matching(FailedFilter(**which), dry_run=dry_run)
    return {"matched": result.matched, "retried": result.retried, "dry_run": dry_run}


@blp.route("/messages", methods=["POST"])
@blp.arguments(
    NewMessageSchema,
    error_status_code=422,
    examples={
        "now": {
            "summary": "Send in the next batch",
            "value": {"recipient_phone_number": EXAMPLE_PHONE, "content": EXAMPLE_CONTENT},
        },
        "scheduled": {
            "summary": "Send no earlier than a given time",
            "value": {"recipient_phone_number": EXAMPLE_PHONE, "content": "Your table is booked.", "send_at": EXAMPLE_SEND_AT},
        },
    },
)
@blp.response(201, MessageSchema, description="The stored message, pending.", example=PENDING_MESSAGE_EXAMPLE)
@messaging_call(blp, 413, 422)
def create(new):
    """Queue a message for sending, at once or at `send_at`.

    It goes out in a later batch, oldest first (a scheduled message counts from its `send_at`).
    The answer reports its `encoding` and `segments`.
    """
    recipient, text, send_at = new["recipient_phone_number"], new["content"], new.get("send_at")
    content.check(recipient, text, send_at, datetime.now(timezone.utc))
    return runtime().records.insert(recipient, text, send_at=send_at)


@blp.route("/messages/<message_id>", methods=["GET"], parameters=[MESSAGE_ID])
@blp.response(200, MessageSchema, description="The message.")
@messaging_call(blp, 404)
def get(message_id: str):
    """One message; delivery details come from the Redis cache when it has them."""
    message = _find(message_id)
    return _with_cached_delivery(message)


@blp.route("/messages/<message_id>/retry", methods=["POST"], parameters=[FAILED_MESSAGE_ID])
@blp.response(
    200, MessageSchema, description="The message, pending again with 0 attempts and no error.", example=PENDING_MESSAGE_EXAMPLE
)
@messaging_call(blp, 404, 409, 413)
def retry(message_id: str):
    """Put a failed message back to pending with its attempts reset.

    It goes out in a later batch. Any other status answers 409.
    """
    return _change(message_id, runtime().records.retry_failed, MessageNotRetryable, "a failed message can be retried")


@blp.route("/messages/<message_id>/cancel", methods=["POST"], parameters=[SCHEDULED_MESSAGE_ID])
@blp.response(200, MessageSchema, description="The message, canceled.", example=docs.CANCELED_EXAMPLE)
@messaging_call(blp, 404, 409, 413, documented=docs.CANCEL_ERRORS)
def cancel(message_id: str):
    """Cancel a pending message (scheduled or not): it is never sent.

    Any other status answers 409: a `sending` message is already being delivered.
    """
    return _change(message_id, runtime().records.cancel, MessageNotCancelable, "a pending message can be canceled")


@blp.route("/messages/<message_id>/attempts", methods=["GET"], parameters=[FAILED_MESSAGE_ID])
@blp.arguments(AttemptQuerySchema, location="query", error_status_code=400, as_kwargs=True)
@blp.response(200, AttemptPageSchema, description="A page of the message's delivery attempts, oldest first.")
@messaging_call(blp, 400, 404)
def attempts(message_id: str, *, limit: int, cursor: str | None = None):
    """The message's delivery attempts, oldest first: each POST's trigger, time, duration,
    HTTP status, error, Retry-After and the first 1 KiB of the answer.

    Attempts older than `ATTEMPT_RETENTION_DAYS` (default 30) are pruned. Page with `cursor`:
    the `pagination.next_cursor` of the previous page.
    """
    message = _find(message_id)
    after_id = int(cursor) if cursor else 0
    # One row more than asked tells whether there is a next page.
    rows = runtime().records.list_attempts(message.id, limit=limit + 1, after_id=after_id)
    page = rows[:limit]
    next_cursor = str(page[-1].id) if len(rows) > limit else None
    return {"data": page, "pagination": {"limit": limit, "next_cursor": next_cursor}}


@blp.route("/messages/<message_id>/events", methods=["GET"], parameters=[DELIVERED_MESSAGE_ID])
@blp.response(200, EventPageSchema, description="The message's delivery receipts and its status callback events.")
@messaging_call(blp, 404)
def events(message_id: str):
    """The delivery receipts the provider sent about the message, in order of arrival, and what
    became of each: `applied`, `duplicate`, `ignored` (a later, different one), `kept` (it came
    before the message was recorded sent, and was applied when it was). At most 100.

    `callbacks`: each change of the message's state (`message.sent`, `message.failed`,
    `message.delivered`, `message.undelivered`, `message.expired`, `message.canceled`) in order,
    and the state of its POST to STATUS_CALLBACK_URL. At most 100."""
    message = _find(message_id)
    return {"data": runtime().receipts.history(message.webhook_message_id), "callbacks": runtime().events.history(message.id)}


def _page(
    status: Status, *, limit: int, offset: int, after: cursors.Keyset | None = None, delivery: str | None = None
) -> dict:
    # One row more than asked tells whether there is a next page, without a second query.
    rows = _messages(status, limit=limit + 1, offset=offset, after=after, delivery=delivery)
    messages = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = messages[-1]
        position = cursors.after(_sort_time(status, last), last.id, end_offset=offset + limit)
        next_cursor = cursors.encode(position, status.label, cursors.signing_key())
    return {
        "data": messages,
        "pagination": {
            "limit": limit,
            "offset": offset,
            "total": runtime().totals.total(status, delivery=delivery),
            "next_cursor": next_cursor,
        },
    }


def _messages(
    status: Status, *, limit: int, offset: int, after: cursors.Keyset | None = None, delivery: str | None = None
) -> list[Message]:
    keyset = (after.time, after.id) if after else None
    return runtime().records.page(status, limit=limit, offset=offset, after=keyset, delivery=delivery)


def _sort_time(status: Status, message: Message) -> datetime | None:
    """The column the list is ordered by (see queries.sql: list_sent, list_failed)."""
    return message.sent_at if status is Status.SENT else message.updated_at


def _change(
    message_id: str,
    change: Callable[[UUID], Message | None],
    refusal: type[MessagingError],
    rule: str,
) -> Message:
    """A guarded status change; when the message's status does not allow it, `refusal` names that status."""
    message = _find(message_id)
    changed = change(message.id)
    if changed is None:
        raise refusal(f"Message {message.id} is {message.status.label}; only {rule}.")
    return changed


def _find(message_id: str) -> Message:
    try:
        parsed = UUID(message_id)
    except ValueError:
        raise MessageNotFound(f"No message with id {message_id!r}.") from None
    message = runtime().records.get(parsed)
    if message is None:
        raise MessageNotFound(f"No message with id {message_id}.")
    return message


def _with_cached_delivery(message: Message) -> Message:
    try:
        cached = runtime().cache.get(message.id)
    except CacheUnavailable:
        return message  # PostgreSQL has the record too; the cache only answers faster
    if cached is None:
        return message
    return dataclasses.replace(
        message,
        status=Status.SENT,
        sent_at=cached.sent_at or message.sent_at,
        webhook_message_id=cached.webhook_message_id or message.webhook_message_id,
    )
