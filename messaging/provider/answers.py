"""What the provider's answers mean: accepted or not, whether to try again, when, and its messageId.

Everything here reads text the provider sent, so it is checked and cleaned before it is kept.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from urllib3 import exceptions

from messaging.delivery.ports import Accepted, DeliveryFailed, ErrorClass

TRANSIENT_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
CONNECTION_FAILED = "ConnectionError: connection refused, reset or name not resolved"
# What is kept of an answer for the records.
ANSWER_EXCERPT_BYTES = 1024
MAX_MESSAGE_ID = 255
DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


def classify(status: int, reason: str, headers: Any, answer: bytes, seconds: float) -> Accepted:
    """A 2xx is Accepted; any other status raises DeliveryFailed, transient or not, with its Retry-After."""
    excerpt = printable(answer[:ANSWER_EXCERPT_BYTES].decode("utf-8", "replace"), keep="\n\t")
    if 200 <= status < 300:
        return Accepted(status, message_id_of(answer), seconds, excerpt)
    text = f"HTTP {status} {printable(reason)}".strip()
    transient = status in TRANSIENT_STATUSES
    raise DeliveryFailed(
        text,
        transient=transient,
        error_class=ErrorClass.HTTP_STATUS,
        retry_after=retry_after_seconds(headers.get("Retry-After")) if transient else None,
        seconds=seconds,
        status_code=status,
        answer=excerpt,
    )


def message_id_of(answer: bytes) -> str | None:
    """The provider's messageId, when the answer is JSON that has one; any 2xx is a success regardless."""
    try:
        body = json.loads(answer)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep, a number too long
        return None
    value = body.get("messageId") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = printable(str(value) if isinstance(value, str) else f"{value}")[:MAX_MESSAGE_ID]
    return text or None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from either of its forms (delta-seconds or an HTTP date); None when unreadable."""
    value = (value or "").strip()
    if not value:
        return None
    # ASCII digits only: str.isdigit() also takes "²" and "٣", which float() then refuses.
    if DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def printable(text: str, keep: str = "") -> str:
    """Text a provider sent, safe to store and show: control characters (but those in `keep`) and
    unpaired surrogates replaced by U+FFFD."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else "\ufffd" for c in text)


def describe(error: Exception, expired: bool, timeout_seconds: float) -> tuple[str, bool, ErrorClass]:
    """Why a POST got no answer: a short reason without the URL, which may carry credentials, whether a later attempt may
    succeed, and the error's class."""
    if expired:
        return f"Timeout: no complete answer within {timeout_seconds:g}s", True, ErrorClass.TIMEOUT
    # NewConnectionError subclasses ConnectTimeoutError, yet means refused or not resolved.
    if isinstance(error, exceptions.NewConnectionError):
        return CONNECTION_FAILED, True, ErrorClass.CONNECTION
    if isinstance(error, exceptions.ConnectTimeoutError):
        return "ConnectTimeout: no connection within the timeout", True, ErrorClass.TIMEOUT
    if isinstance(error, (exceptions.TimeoutError, TimeoutError)):
        return "ReadTimeout: no answer within the timeout", True, ErrorClass.TIMEOUT
    if isinstance(error, (exceptions.ProtocolError, exceptions.SSLError, exceptions.ClosedPoolError, OSError)):
        return CONNECTION_FAILED, True, ErrorClass.CONNECTION
    # Every connection stayed busy for the whole timeout; nothing was sent.
    if isinstance(error, exceptions.EmptyPoolError):
        return "PoolTimeout: no free connection within the timeout", True, ErrorClass.TIMEOUT
    return f"{type(error).__name__}: request failed", False, ErrorClass.REQUEST
