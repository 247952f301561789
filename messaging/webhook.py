"""The provider's webhook: one POST per message, its answer classified as sent, retry later, or give up."""

from __future__ import annotations

import enum
import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

import certifi
import urllib3
from standardwebhooks import Webhook as StandardWebhook
from urllib3 import exceptions

from messaging import deadline
from messaging.errors import MessagingError

AUTH_HEADER = "x-ins-auth-key"
TRANSIENT_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
CONNECTION_FAILED = "ConnectionError: connection refused, reset or name not resolved"
# What is read of an answer: enough for any provider's JSON; a larger answer is cut and its
# connection dropped. What is kept of it for the records.
MAX_ANSWER_BYTES = 64 * 1024
ANSWER_EXCERPT_BYTES = 1024
MAX_MESSAGE_ID = 255
DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


class ErrorClass(str, enum.Enum):
    """Why an attempt failed, in a word: what an operator filters attempts by."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_STATUS = "http_status"
    REQUEST = "request"  # the request itself could not be made (a header value http refuses)


@dataclass(frozen=True)
class Accepted:
    """The webhook took the message."""

    status_code: int
    webhook_message_id: str | None
    seconds: float
    answer: str = ""


class DeliveryFailed(MessagingError):
    """The webhook did not take the message."""

    def __init__(
        self,
        reason: str,
        *,
        transient: bool,
        error_class: ErrorClass,
        retry_after: float | None = None,
        seconds: float = 0.0,
        status_code: int | None = None,
        answer: str = "",
    ):
        self.reason = reason
        self.transient = transient
        self.error_class = error_class
        self.retry_after = retry_after
        self.seconds = seconds
        self.status_code = status_code
        self.answer = answer
        super().__init__(reason)


class _Attempt(threading.local):
    watch: deadline.Watch | None = None


class _WatchedConnection:
    """A pooled connection that hands its socket to the watchdog for the call under way.

    The call is known through a thread-local, set by `WebhookClient.send` around `urlopen`:
    urllib3 gives no other way to reach the connection it picks from its pool.
    """

    watchdog: deadline.Watchdog
    attempt: _Attempt

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        watch = self.attempt.watch
        if watch is not None and watch.expired:
            # Name resolution, which no socket timeout bounds, outlived the deadline: send nothing.
            self.close()  # type: ignore[attr-defined]
            raise exceptions.ConnectTimeoutError(self, "no connection within the deadline")

    def request(self, *args, **kwargs) -> None:
        watch = self.attempt.watch
        if watch is not None:
            self.watchdog.attach(watch, self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class WebhookClient:
    """POSTs messages over one pool of kept-alive connections (one client per process).

    urllib3 directly, not requests: requests doubles the CPU of a POST, and CPU per message
    is what limits a worker. Every POST is bounded by wall clock, from connect to the last byte
    of the answer: a provider that trickles its answer is cut off at the timeout, so a POST never
    outlives its claim and the message is never POSTed twice at once.
    """

    def __init__(
        self,
        url: str,
        auth_key: str,
        timeout_seconds: float,
        *,
        pool_size: int = 10,
        signing_secrets: tuple[str, ...] = (),
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self._signers = tuple(StandardWebhook(secret) for secret in signing_secrets)
        # The watchdog cuts a POST at the deadline; the read timeout is only a backstop behind it.
        self.timeout = urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds + 1)
        self.path = urllib3.util.parse_url(url).request_uri
        self.headers = {"Content-Type": "application/json", **_basic_auth(url)}
        if auth_key:
            self.headers[AUTH_HEADER] = auth_key
        # Callers size the pool to their concurrency, so a sender never waits for a connection;
        # blocking keeps surplus senders from opening connections the pool then discards with a
        # warning. A pool never reads proxy variables from the environment.
        self.pool = urllib3.connection_from_url(url, maxsize=pool_size, block=True, **_tls(url))
        self._attempt = _Attempt()
        self._watchdog = deadline.Watchdog()
        self.pool.ConnectionCls = type(
            "Watched" + self.pool.ConnectionCls.__name__,
            (_WatchedConnection, self.pool.ConnectionCls),
            {"watchdog": self._watchdog, "attempt": self._attempt},
        )

    def send(self, message_id: UUID, to: str, content: str) -> Accepted:
        """POST one message; raise DeliveryFailed saying whether to try again."""
        body = json.dumps({"to": to, "content": content}).encode()
        headers = {**self.headers, "Idempotency-Key": str(message_id), **self._signature(message_id, body)}
        started = time.perf_counter()
        watch = self._watchdog.start(self.timeout_seconds)
        self._attempt.watch = watch
        try:
            status, reason, answer_headers, answer = self._post(body, headers, watch)
        except (exceptions.HTTPError, OSError, ValueError) as error:
            # ValueError: http.client refuses a header value (say an auth key ending in a newline).
            reason_text, transient, error_class = _describe(error, watch.expired, self.timeout_seconds)
            raise DeliveryFailed(
                reason_text, transient=transient, error_class=error_class, seconds=time.perf_counter() - started
            ) from error
        finally:
            self._watchdog.finish(watch)
            self._attempt.watch = None
        return _classify(status, reason, answer_headers, answer, time.perf_counter() - started)

    def _signature(self, message_id: UUID, body: bytes) -> dict[str, str]:
        """Standard Webhooks headers over the exact bytes sent: one `v1,` signature per secret (two while rotating)."""
        if not self._signers:
            return {}
        now = datetime.now(timezone.utc)
        text = body.decode("utf-8")  # the package signs str as its UTF-8 bytes: these very bytes
        return {
            "webhook-id": str(message_id),
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": " ".join(signer.sign(str(message_id), now, text) for signer in self._signers),
        }

    def _post(self, body: bytes, headers: dict[str, str], watch: deadline.Watch) -> tuple[int, str, Any, bytes]:
        """The answer's status, reason, headers and first bytes, read within the deadline."""
        response = self.pool.urlopen(
            "POST",
            self.path,
            body=body,
            headers=headers,
            # A retry would be a second POST of the same message.
            retries=False,
            redirect=False,
            timeout=self.timeout,
            pool_timeout=watch.remaining(),
            preload_content=False,
            decode_content=False,
        )
        try:
            answer = response.read(MAX_ANSWER_BYTES)
            if watch.expired:
                raise exceptions.ReadTimeoutError(self.pool, self.path, "answer cut at the deadline")
            if len(answer) >= MAX_ANSWER_BYTES:
                response.close()  # an answer too long to read: its connection cannot serve another POST
        except BaseException:
            response.close()
            raise
        finally:
            response.release_conn()
        return response.status, response.reason or "", response.headers, answer

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


def _classify(status: int, reason: str, headers: Any, answer: bytes, seconds: float) -> Accepted:
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


def _describe(error: Exception, expired: bool, timeout_seconds: float) -> tuple[str, bool, ErrorClass]:
    """A short reason without the URL, which may carry credentials, whether a later attempt may
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
