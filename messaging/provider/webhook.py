"""The provider's webhook: one POST per message, its answer classified as sent, retry later, or give up.

The same client POSTs the status callbacks (messaging/ops/callbacks.py): a signed JSON body under an
idempotency key, bounded by wall clock, is all either needs.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

import certifi
import urllib3
from standardwebhooks import Webhook as StandardWebhook
from urllib3 import exceptions

from messaging.delivery.ports import Accepted, DeliveryFailed, NotSent
from messaging.provider import answers, deadline

AUTH_HEADER = "x-ins-auth-key"
# The setting each header's value comes from, to name it when http.client refuses the value.
HEADER_SETTINGS = {AUTH_HEADER: "WEBHOOK_AUTH_KEY", "authorization": "WEBHOOK_URL", "webhook-signature": "WEBHOOK_SIGNING_SECRET"}
# What is read of an answer: enough for any provider's JSON; a larger answer is cut and its
# connection dropped.
MAX_ANSWER_BYTES = 64 * 1024


class _CurrentCall(threading.local):
    """The deadline of the POST this thread has under way, if any."""

    watch: deadline.Watch | None = None


class _WatchedConnection:
    """A pooled connection that hands its socket to the watchdog for the call under way.

    The call is known through a thread-local, set by `WebhookClient.send` around `urlopen`:
    urllib3 gives no other way to reach the connection it picks from its pool.
    """

    watchdog: deadline.Watchdog
    current: _CurrentCall

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        watch = self.current.watch
        if watch is not None and watch.expired:
            # Name resolution, which no socket timeout bounds, outlived the deadline: send nothing.
            self.close()  # type: ignore[attr-defined]
            raise exceptions.ConnectTimeoutError(self, "no connection within the deadline")

    def request(self, *args, **kwargs) -> None:
        watch = self.current.watch
        if watch is not None:
            self.watchdog.attach(watch, self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]

    def putheader(self, header: str | bytes, *values: str | bytes) -> None:
        """http.client checks each header as it is put, before a byte of the request is written: a
        value it refuses (a secret file's trailing newline) means nothing left."""
        try:
            super().putheader(header, *values)  # type: ignore[misc]
        except ValueError:  # the error quotes the value, maybe a secret: it is dropped (`from None`)
            name = header.decode("latin-1") if isinstance(header, bytes) else header
            setting = HEADER_SETTINGS.get(name.lower())
            raise NotSent(f"http refuses the value of the {name} header", setting=setting) from None


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
        self._current = _CurrentCall()
        self._watchdog = deadline.Watchdog()
        self.pool.ConnectionCls = type(
            "Watched" + self.pool.ConnectionCls.__name__,
            (_WatchedConnection, self.pool.ConnectionCls),
            {"watchdog": self._watchdog, "current": self._current},
        )

    def send(self, message_id: UUID, to: str, content: str) -> Accepted:
        """POST one message; raise DeliveryFailed saying whether to try again, or NotSent when the request
        could not be made (nothing left). Anything else raised may come after the request left."""
        return self.post(str(message_id), json.dumps({"to": to, "content": content}).encode())

    def post(self, key: str, body: bytes) -> Accepted:
        """POST a JSON body under an idempotency key (also its webhook-id when signed), answered as `send` says."""
        headers = {**self.headers, "Idempotency-Key": key, **self._signature(key, body)}
        started = time.perf_counter()
        watch = self._watchdog.start(self.timeout_seconds)
        self._current.watch = watch
        try:
            status, reason, answer_headers, answer = self._post(body, headers, watch)
        except (exceptions.HTTPError, OSError) as error:
            reason_text, transient, error_class = answers.describe(error, watch.expired, self.timeout_seconds)
            raise DeliveryFailed(
                reason_text, transient=transient, error_class=error_class, seconds=time.perf_counter() - started
            ) from error
        finally:
            self._watchdog.finish(watch)
            self._current.watch = None
        return answers.classify(status, reason, answer_headers, answer, time.perf_counter() - started)

    def _signature(self, key: str, body: bytes) -> dict[str, str]:
        """Standard Webhooks headers over the exact bytes sent: one `v1,` signature per secret (two while rotating)."""
        if not self._signers:
            return {}
        now = datetime.now(timezone.utc)
        text = body.decode("utf-8")  # the package signs str as its UTF-8 bytes: these very bytes
        return {
            "webhook-id": key,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": " ".join(signer.sign(key, now, text) for signer in self._signers),
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
