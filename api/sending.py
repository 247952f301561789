"""Turning sending on and off, and what it is doing: /messaging/start, /stop, /status."""

from __future__ import annotations

import logging

import kombu.exceptions

from api import celery, runtime, settings
from api.blueprint import Blueprint
from api.docs import messaging_call
from api.schemas import StatusSchema, SwitchSchema
from messaging.logs import fields
from messaging.task_names import BATCH_QUEUE, BATCH_TASK

log = logging.getLogger(__name__)

STARTED = "Sending started; a batch runs now."
STARTED_WITHOUT_BATCH = "Sending started; the broker is unreachable, so the first batch runs at the next interval."
ALREADY_ON = "Sending was already on; nothing changed."
BREAKER_CLOSED = " The circuit breaker was open; it is closed now."

blp = Blueprint("sending", __name__, url_prefix="/messaging", description="Start and stop sending.")


@blp.route("/start", methods=["POST"])
@blp.response(200, SwitchSchema, description="Sending is enabled.")
@messaging_call(blp, 413, needs=("redis",))
def start():
    """Start sending; when it was stopped, run one batch at once.

    Idempotent: while sending is on, starting again runs no batch (API calls never raise
    the send rate). From then on a batch runs every `SEND_INTERVAL_SECONDS`. An open
    circuit breaker is closed by hand, whether sending was on or not.
    """
    # The operator says the provider is back: close an open breaker, even with sending on.
    breaker = BREAKER_CLOSED if runtime().breaker.close_by_hand() else ""
    if not runtime().switch.switch_on():
        return {"enabled": True, "message": ALREADY_ON + breaker}
    log.info("event=sending_started")
    if _run_batch_now():
        return {"enabled": True, "message": STARTED + breaker}
    return {"enabled": True, "message": STARTED_WITHOUT_BATCH + breaker}


@blp.route("/stop", methods=["POST"])
@blp.response(
    200, SwitchSchema, description="Sending is disabled.", example={"enabled": False, "message": "Sending stopped."}
)
@messaging_call(blp, 413, needs=("redis",))
def stop():
    """Stop sending.

    No new batch starts; a claimed message whose send has not begun goes back
    to pending unsent; a POST under way finishes and is recorded.
    """
    runtime().switch.set_enabled(False)
    log.info("event=sending_stopped")
    return {"enabled": False, "message": "Sending stopped."}


@blp.route("/status", methods=["GET"])
@blp.response(200, StatusSchema, description="The switch, the schedule, the counts and flow control.")
@messaging_call(blp, needs=("postgresql", "redis"))
def status():
    """Whether sending is on, its schedule, how many messages are in each status, the circuit
    breaker toward the provider and the rate limit.

    The counts are at most a few seconds old: one count serves every call in that time.
    """
    by_status = runtime().counts.get()
    return {
        "enabled": runtime().switch.is_enabled(),
        "interval_seconds": settings().send_interval_seconds,
        "batch_size": settings().send_batch_size,
        "counts": {status.label: total for status, total in by_status.items()},
        **_flow_control(),
    }


def _flow_control() -> dict:
    """The breaker and the rate limit, as every worker sees them."""
    state = runtime().breaker.status()
    return {
        "breaker": {"state": state.state, "since": state.since, "why": state.why, "reopens_at": state.reopens_at},
        "rate_limit": {
            "per_second": settings().rate_limit_per_second,
            "burst": settings().rate_limit_burst,
            "paused_until": state.paused_until,
        },
    }


def _run_batch_now() -> bool:
    try:
        celery().send_task(
            BATCH_TASK,
            queue=BATCH_QUEUE,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
        )
        return True
    except kombu.exceptions.OperationalError as error:
        log.warning("event=batch_not_enqueued %s", fields(dependency="broker", reason=error))
        return False
