"""The provider's webhook: one POST per message, its answer classified as sent, retry later, or give up."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from uuid import UUID

import requests
import urllib3
from requests.adapters import HTTPAdapter

from messaging.errors import MessagingError

log = logging.getLogger(__name__)

AUTH_HEADER = "x-ins-auth-key"
TRANSIENT_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
# Connection-level failures that a later attempt may not meet.
TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


@dataclass(frozen=True)
class Accepted:
    """The webhook took the message."""

    status_code: int
    webhook_message_id: str | None
    seconds: float


class DeliveryFailed(MessagingError):
    """The webhook did not take the message."""

    def __init__(self, reason: str, *, transient: bool, retry_after: float | None = None, seconds: float = 0.0):
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after
        self.seconds = seconds
        super().__init__(reason)


class WebhookClient:
    """POSTs messages over one kept-alive session (one client per process)."""

    def __init__(self, url: str, auth_key: str, timeout_seconds: float, *, pool_size: int = 10) -> None:
        self.url = url
        self.timeout = urllib3.Timeout(total=timeout_seconds)
        self.session = requests.Session()
        # Reading proxy settings from the environment on every request costs ~45% of a local POST.
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"Content-Type": "application/json"})
        if auth_key:
            self.session.headers[AUTH_HEADER] = auth_key

    def send(self, message_id: UUID, to: str, content: str) -> Accepted:
        """POST one message; raise DeliveryFailed saying whether to try again."""
        body = json.dumps({"to": to, "content": content})
        started = time.perf_counter()
        try:
            response = self.session.post(
                self.url,
                data=body.encode(),
                headers={"Idempotency-Key": str(message_id)},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except TRANSIENT_ERRORS as error:
            raise DeliveryFailed(_describe(error), transient=True, seconds=time.perf_counter() - started) from error
        except requests.RequestException as error:
            raise DeliveryFailed(_describe(error), transient=False, seconds=time.perf_counter() - started) from error
        return _classify(response, time.perf_counter() - started)

    def close(self) -> None:
        self.session.close()


def _classify(response: requests.Response, seconds: float) -> Accepted:
    status = response.status_code
    if 200 <= status < 300:
        return Accepted(status, _message_id(response), seconds)
    reason = f"HTTP {status} {response.reason or ''}".strip()
    if status in TRANSIENT_STATUSES:
        raise DeliveryFailed(reason, transient=True, retry_after=_retry_after(response), seconds=seconds)
    raise DeliveryFailed(reason, transient=False, seconds=seconds)


def _message_id(response: requests.Response) -> str | None:
    """The provider's messageId, when the body is JSON that has one; any 2xx is a success regardless."""
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get("messageId") if isinstance(body, dict) else None
    return str(value)[:255] if isinstance(value, (str, int)) else None


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After as seconds, from either of its forms (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _describe(error: requests.RequestException) -> str:
    """A short reason without the URL, which may carry credentials."""
    if isinstance(error, requests.ConnectTimeout):
        return "ConnectTimeout: no connection within the timeout"
    if isinstance(error, requests.Timeout):
        return "ReadTimeout: no answer within the timeout"
    if isinstance(error, requests.ConnectionError):
        return "ConnectionError: connection refused, reset or name not resolved"
    return f"{type(error).__name__}: request failed"
