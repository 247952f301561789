"""Turning sending on and off, and what it is doing: /messaging/start, /stop, /status."""

from __future__ import annotations

import logging

import kombu.exceptions
from flask_smorest import Blueprint

from api import auth, celery, runtime, settings
from api.docs import ERROR_RESPONSES
from api.schemas import StatusSchema, SwitchSchema
from messaging import delivery, store
from messaging.logs import fields

log = logging.getLogger(__name__)

blp = Blueprint("sending", __name__, url_prefix="/messaging", description="Start and stop sending.")
blp.before_request(auth.require_token)


@blp.route("/start", methods=["POST"])
@blp.response(200, SwitchSchema)
@blp.alt_response(401, **ERROR_RESPONSES[401])
@blp.alt_response(503, **ERROR_RESPONSES[503])
def start():
    """Start sending, and run one batch at once.

    Idempotent: starting again is fine. From then on a batch runs every
    `SEND_INTERVAL_SECONDS`.
    """
    runtime().cache.set_enabled(True)
    log.info("event=sending_started")
    if _run_batch_now():
        return {"enabled": True, "message": "Sending started; a batch runs now."}
    return {"enabled": True, "message": "Sending started; the broker is unreachable, so the first batch runs at the next interval."}


@blp.route("/stop", methods=["POST"])
@blp.response(200, SwitchSchema)
@blp.alt_response(401, **ERROR_RESPONSES[401])
@blp.alt_response(503, **ERROR_RESPONSES[503])
def stop():
    """Stop sending.

    No new batch starts; a claimed message whose send has not begun goes back
    to pending unsent; a POST under way finishes and is recorded.
    """
    runtime().cache.set_enabled(False)
    log.info("event=sending_stopped")
    return {"enabled": False, "message": "Sending stopped."}


@blp.route("/status", methods=["GET"])
@blp.response(200, StatusSchema)
@blp.alt_response(401, **ERROR_RESPONSES[401])
@blp.alt_response(503, **ERROR_RESPONSES[503])
def status():
    """Whether sending is on, its schedule, and how many messages are in each status."""
    counts = store.count_by_status(runtime().pool)
    return {
        "enabled": runtime().cache.is_enabled(),
        "interval_seconds": settings().send_interval_seconds,
        "batch_size": settings().send_batch_size,
        "counts": {status.label: total for status, total in counts.items()},
    }


def _run_batch_now() -> bool:
    try:
        celery().send_task(
            delivery.BATCH_TASK,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
        )
        return True
    except kombu.exceptions.OperationalError as error:
        log.warning("event=batch_not_enqueued %s", fields(dependency="broker", reason=error))
        return False
