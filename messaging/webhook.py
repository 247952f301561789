"""The provider's webhook: one POST per message, its answer classified as sent, retry later, or give up."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import unquote, urlsplit
from uuid import UUID

import certifi
import urllib3
from urllib3 import exceptions

from messaging.errors import MessagingError

AUTH_HEADER = "x-ins-auth-key"
TRANSIENT_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
CONNECTION_FAILED = "ConnectionError: connection refused, reset or name not resolved"


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
    """POSTs messages over one pool of kept-alive connections (one client per process).

    urllib3 directly, not requests: requests doubles the CPU of a POST, and CPU per message
    is what limits a worker.
    """

    def __init__(self, url: str, auth_key: str, timeout_seconds: float, *, pool_size: int = 10) -> None:
        self.timeout = urllib3.Timeout(total=timeout_seconds)
        self.path = urllib3.util.parse_url(url).request_uri
        self.headers = {"Content-Type": "application/json", **_basic_auth(url)}
        if auth_key:
            self.headers[AUTH_HEADER] = auth_key
        # Callers size the pool to their concurrency, so a sender never waits for a connection;
        # blocking keeps surplus senders from opening connections the pool then discards with a
        # warning. A pool never reads proxy variables from the environment.
        self.pool = urllib3.connection_from_url(url, maxsize=pool_size, block=True, **_tls(url))

    def send(self, message_id: UUID, to: str, content: str) -> Accepted:
        """POST one message; raise DeliveryFailed saying whether to try again."""
        body = json.dumps({"to": to, "content": content}).encode()
        headers = {**self.headers, "Idempotency-Key": str(message_id)}
        started = time.perf_counter()
        try:
            response = self.pool.urlopen(
                "POST",
                self.path,
                body=body,
                headers=headers,
                # A retry would be a second POST of the same message.
                retries=False,
                redirect=False,
                timeout=self.timeout,
                pool_timeout=self.timeout.total,
                # Read the whole body, so the connection goes back to the pool.
                preload_content=True,
            )
        # ValueError: http.client refuses a header value (say an auth key ending in a newline).
        except (exceptions.HTTPError, OSError, ValueError) as error:
            reason, transient = _describe(error)
            raise DeliveryFailed(reason, transient=transient, seconds=time.perf_counter() - started) from error
        return _classify(response, time.perf_counter() - started)

    def close(self) -> None:
        self.pool.close()


def _basic_auth(url: str) -> dict[str, str]:
    """Credentials in the URL, sent as Basic auth the way requests sent them."""
    parts = urlsplit(url)
    if parts.password is None or not (parts.username or parts.password):
        return {}
    return urllib3.make_headers(basic_auth=f"{unquote(parts.username or '')}:{unquote(parts.password)}")


def _tls(url: str) -> dict[str, str]:
    """Verify certificates against certifi's bundle, as requests did, whatever the system trusts."""
    if urlsplit(url).scheme != "https":
        return {}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": certifi.where()}


def _classify(response: urllib3.BaseHTTPResponse, seconds: float) -> Accepted:
    status = response.status
    if 200 <= status < 300:
        return Accepted(status, _message_id(response), seconds)
    reason = f"HTTP {status} {response.reason or ''}".strip()
    if status in TRANSIENT_STATUSES:
        raise DeliveryFailed(reason, transient=True, retry_after=_retry_after(response), seconds=seconds)
    raise DeliveryFailed(reason, transient=False, seconds=seconds)


def _message_id(response: urllib3.BaseHTTPResponse) -> str | None:
    """The provider's messageId, when the body is JSON that has one; any 2xx is a success regardless."""
    try:
        body = json.loads(response.data)
    except ValueError:
        return None
    value = body.get("messageId") if isinstance(body, dict) else None
    return str(value)[:255] if isinstance(value, (str, int)) else None


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
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


def _describe(error: Exception) -> tuple[str, bool]:
    """A short reason without the URL, which may carry credentials, and whether a later attempt may succeed."""
    # NewConnectionError subclasses ConnectTimeoutError, yet means refused or not resolved.
    if isinstance(error, exceptions.NewConnectionError):
        return CONNECTION_FAILED, True
    if isinstance(error, exceptions.ConnectTimeoutError):
        return "ConnectTimeout: no connection within the timeout", True
    if isinstance(error, (exceptions.TimeoutError, TimeoutError)):
        return "ReadTimeout: no answer within the timeout", True
    if isinstance(error, (exceptions.ProtocolError, exceptions.SSLError, exceptions.ClosedPoolError, OSError)):
        return CONNECTION_FAILED, True
    # Every connection stayed busy for the whole timeout; nothing was sent.
    if isinstance(error, exceptions.EmptyPoolError):
        return "PoolTimeout: no free connection within the timeout", True
    return f"{type(error).__name__}: request failed", False
