"""Status callbacks that failed for good: `POST /messaging/callbacks/retry` sends them again once their
receiver is back, as a bulk retry does for failed messages."""

from __future__ import annotations

from api import docs, runtime
from api.blueprint import Blueprint
from api.docs import messaging_call
from api.fields import ZonedDateTime
from api.schemas import BulkRetryLimitSchema, BulkRetryResultSchema
from messaging.postgres.events import FailedCallbacks

blp = Blueprint("callbacks", __name__, url_prefix="/messaging", description="Status callbacks to STATUS_CALLBACK_URL.")


class CallbackRetrySchema(BulkRetryLimitSchema):
    """Which failed status callbacks to send again; every property is optional, and none means all (up to `limit`)."""

    occurred_after = ZonedDateTime(
        metadata={"example": "2026-11-28T00:00:00Z",
                  "description": "The change the event reports occurred at or after this time (ISO 8601 with a zone)."}  # fmt: skip
    )
    occurred_before = ZonedDateTime(
        metadata={"example": "2026-12-31T00:00:00Z",
                  "description": "The change the event reports occurred before this time (ISO 8601 with a zone)."}  # fmt: skip
    )


@blp.route("/callbacks/retry", methods=["POST"])
@blp.arguments(
    CallbackRetrySchema,
    required=False,
    error_status_code=422,
    example={"occurred_after": "2026-11-28T00:00:00Z", "limit": 1000},
)
@blp.response(200, BulkRetryResultSchema, description="How many failed callbacks matched, and are pending again.")
@messaging_call(blp, 413, 422, documented=docs.CALLBACK_RETRY_ERRORS)
def retry_failed_callbacks(which):
    """Send again the status callbacks that failed for good (STATUS_CALLBACK_MAX_ATTEMPTS used): after an
    outage of the receiver longer than their backoff.

    An optional filter picks them by when the change they report occurred: in [`occurred_after`,
    `occurred_before`), at most `limit` (1 to 10,000; default 1,000), oldest first. Each goes out
    again with its attempts reset and the same `webhook-id`, so a receiver that took it once can
    tell. Events whose message retention deleted are left. With `dry_run` only counts. Call again
    while `matched` equals `limit`. They go out while status callbacks are on.
    """
    dry_run = which.pop("dry_run")
    result = runtime().events.retry_failed(FailedCallbacks(**which), dry_run=dry_run)
    return {"matched": result.matched, "retried": result.retried, "dry_run": dry_run}
