"""Faults that are not the message's (a setting, an unexpected error): when a claim they hit may be
claimed again, and the one line that says so per interval, however many messages they hit."""

from __future__ import annotations

import logging
import traceback
from pathlib import PurePath
from uuid import UUID

from messaging.delivery.ports import NotSent
from messaging.logs import Throttle, fields
from messaging.settings import Settings

log = logging.getLogger("messaging.delivery.rules")

# A fault that is not the message's hits every message alike: said once per interval, not per message.
fault_log = Throttle(seconds=30)


def release_delay(settings: Settings, *, may_have_left: bool) -> float:
    """Not before the next batch, so that a fault that stays (a bad setting) costs a claim per interval,
    not a loop; and when the request may have left, not before that POST has ended (it is cut at
    WEBHOOK_TIMEOUT_SECONDS): a message is never POSTed while an earlier POST of it may be open."""
    if may_have_left:
        return max(settings.send_interval_seconds, settings.webhook_timeout_seconds)
    return settings.send_interval_seconds


def report(message_id: UUID, error: Exception, delay: float) -> str | None:
    """One warning per fault and interval, naming the setting at fault when known (returned); never
    the error's text, which may quote a header's value: a secret."""
    if isinstance(error, NotSent):
        details = {"setting": error.setting, "reason": error.reason}
    else:
        details = {"error": type(error).__name__, "where": _where(error)}
    if fault_log.allow(repr(sorted(details.items()))):
        log.warning("event=send_fault %s", fields(message_id=message_id, **details, retry_in_s=f"{delay:g}"))
    return details.get("setting")


def _where(error: Exception) -> str | None:
    """The file and line an unexpected error came from (its innermost frame), to find it without its text."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return None
    return f"{'/'.join(PurePath(frames[-1].filename).parts[-2:])}:{frames[-1].lineno}"
