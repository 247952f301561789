"""HTTP server that records webhook deliveries and answers them as a programmable provider would."""

from __future__ import annotations

import json
import logging
import select
import socket
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

log = logging.getLogger("receiver")

CONTROL_PREFIX = "/_receiver/"
BODY_MODES = ("json", "text", "close")
DEFAULT_BEHAVIOUR: dict[str, Any] = {
    "delay_ms": 0, "status": 202, "retry_after": None,
    "body": "json", "fail_first": 0, "fail_status": 500,
    "trickle_ms": 0,  # > 0: the answer's body goes out one byte per trickle_ms (a provider that trickles)
}


def _int_in(name: str, value: Any, low: int, high: int) -> int:
    # bool is an int subclass; `true` as a status is a caller bug, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]")
    return value


def validate_behaviour(changes: Any) -> dict[str, Any]:
    """Check a partial behaviour update; raise ValueError naming the bad field."""
    if not isinstance(changes, dict):
        raise ValueError("behaviour must be a JSON object")
    unknown = set(changes) - set(DEFAULT_BEHAVIOUR)
    if unknown:
        raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
    out = dict(changes)
    for name, low, high in (("delay_ms", 0, 600_000), ("status", 200, 599),
                            ("fail_first", 0, 1_000_000), ("fail_status", 200, 599), ("trickle_ms", 0, 60_000)):
        if name in out:
            out[name] = _int_in(name, out[name], low, high)
    if out.get("body", "json") not in BODY_MODES:
        raise ValueError(f"body must be one of {list(BODY_MODES)}")
    retry_after = out.get("retry_after")
    if retry_after is not None:
        if isinstance(retry_after, int) and not isinstance(retry_after, bool) and retry_after >= 0:
            out["retry_after"] = str(retry_after)
        elif not (isinstance(retry_after, str) and retry_after.strip()
                  and "\r" not in retry_after and "\n" not in retry_after):
            raise ValueError("retry_after must be null, a non-negative integer or a header string")
    return out


class Store:
    """Thread-safe record of deliveries plus the current behaviour."""

    def __init__(self, behaviour: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._initial = {**DEFAULT_BEHAVIOUR, **validate_behaviour(behaviour)}
        self.reset()

    def reset(self) -> None:
        # Back to the behaviour the receiver was started with, so a CLI --delay-ms survives resets.
        with self._lock:
            self._behaviour = dict(self._initial)
            self._deliveries: list[dict[str, Any]] = []
            self._counts: dict[str | None, int] = {}
            self._accepted = 0
            self._connections = 0
            self._open: dict[str | None, int] = {}
            self._overlaps = 0

    def set_behaviour(self, changes: Any) -> dict[str, Any]:
        valid = validate_behaviour(changes)
        with self._lock:
            self._behaviour.update(valid)
            return dict(self._behaviour)

    def connection_opened(self) -> None:
        with self._lock:
            self._connections += 1

    def request_opened(self, key: str | None) -> None:
        """A delivery's request arrived; a second one of the same key still open is an overlap."""
        with self._lock:
            self._open[key] = self._open.get(key, 0) + 1
            if key is not None and self._open[key] > 1:
                self._overlaps += 1

    def request_closed(self, key: str | None) -> None:
        with self._lock:
            if self._open.get(key):  # a reset while the request was open forgot it already
                self._open[key] -= 1

    def record(self, delivery: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
        """Store a delivery and decide its answer status (None means drop the connection)."""
        with self._lock:
            key = delivery["key"]  # deliveries without Idempotency-Key share the key None
            attempt = self._counts[key] = self._counts.get(key, 0) + 1
            b = dict(self._behaviour)
            if attempt <= b["fail_first"]:
                status: int | None = b["fail_status"]
            else:
                status = None if b["body"] == "close" else b["status"]
            if status is not None and 200 <= status < 300:
                self._accepted += 1
            self._deliveries.append({**delivery, "status": status})
            return status, b

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self._deliveries]

    def count_by_key(self) -> dict[str | None, int]:
        with self._lock:
            return dict(self._counts)

    def stats(self) -> dict[str, int]:
        with self._lock:
            received = len(self._deliveries)
            unique = len(self._counts)
            return {"received": received, "unique": unique, "duplicates": received - unique,
                    "accepted": self._accepted, "connections": self._connections,
                    "overlaps": self._overlaps}


class SignatureCheck:
    """Standard Webhooks verification with the package's own `verify()`; any of the secrets may match."""

    def __init__(self, secrets: str) -> None:
        self._webhooks = [Webhook(secret) for secret in secrets.split()]

    def valid(self, raw: bytes, headers: dict[str, str]) -> bool:
        for webhook in self._webhooks:
            try:
                webhook.verify(raw, headers, json_parse=False)
                return True
            except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature list
                continue
        return False


class ReceiverHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 resets connections under bursts
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store, signatures: SignatureCheck | None = None) -> None:
        self.store = store
        self.signatures = signatures
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, ReceiverHandler)

    def track(self, sock: socket.socket, is_open: bool) -> None:
        with self._open_lock:
            (self._open.add if is_open else self._open.discard)(sock)

    def drop_connections(self) -> None:
        # Keep-alive handler threads outlive serve_forever; cut them so a stopped receiver is really down.
        with self._open_lock:
            for sock in list(self._open):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("receiver: connection error from %s", client_address, exc_info=True)
        else:
            log.exception("receiver: error handling request from %s", client_address)


class ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real provider
    disable_nagle_algorithm = True  # otherwise each answer waits ~40 ms on delayed ACK
    server: ReceiverHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)
        self.server.store.connection_opened()

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("receiver: %s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict[str, str] | None = None, trickle_ms: int = 0) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not trickle_ms:
            self.wfile.write(body)
            return
        self.wfile.flush()
        for byte in body:
            # Wait for the next byte's turn, noticing at once when the client gives up and closes.
            if select.select([self.connection], [], [], trickle_ms / 1000)[0]:
                self.close_connection = True
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _read_body(self) -> bytes | None:
        # Chunked or unparsable lengths are refused: an unread body would corrupt the keep-alive stream.
        length = self.headers.get("Content-Length", "0").strip()
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower() or not length.isdigit():
            return None
        return self.rfile.read(int(length))

    def do_GET(self) -> None:
        store = self.server.store
        if self.path == CONTROL_PREFIX + "stats":
            self._send_json(200, store.stats())
        elif self.path == CONTROL_PREFIX + "deliveries":
            self._send_json(200, [_public(d) for d in store.deliveries()])
        else:
            self._send_json(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            self._send_json(411, {"message": "Content-Length required"})
        elif self.path.startswith(CONTROL_PREFIX):
            self._control(raw)
        else:
            self._deliver(raw)

    def _control(self, raw: bytes) -> None:
        store = self.server.store
        if self.path == CONTROL_PREFIX + "reset":
            store.reset()
            self._send_json(200, store.stats())
        elif self.path == CONTROL_PREFIX + "behaviour":
            try:
                self._send_json(200, store.set_behaviour(json.loads(raw or b"null")))
            except ValueError as exc:  # JSONDecodeError is a ValueError too
                self._send_json(400, {"message": str(exc)})
        else:
            self._send_json(404, {"message": "Not Found"})

    def _deliver(self, raw: bytes) -> None:
        key = self.headers.get("Idempotency-Key")
        self.server.store.request_opened(key)
        try:
            self._answer_delivery(key, raw)
        finally:
            self.server.store.request_closed(key)

    def _answer_delivery(self, key: str | None, raw: bytes) -> None:
        parsed = _parse_json(raw)
        headers = {k.lower(): v for k, v in self.headers.items()}
        delivery = {
            "key": key, "path": self.path, "raw": raw, "json": parsed, "received_at": time.time(), "headers": headers,
        }
        if self.server.signatures is not None:
            delivery["signature_valid"] = self.server.signatures.valid(raw, headers)
            if not delivery["signature_valid"]:
                self.server.store.record(delivery)
                log.info("receiver: delivery key=%s refused: no valid signature", key)
                self._send_json(401, {"message": "invalid signature"})
                return
        status, b = self.server.store.record(delivery)
        to = parsed.get("to") if isinstance(parsed, dict) else None
        log.info("receiver: delivery key=%s to=%s status=%s", key, to, status or "closed")
        if b["delay_ms"]:
            time.sleep(b["delay_ms"] / 1000)
        if status is None:
            self._reset_connection()
            return
        # A provider asks to wait when it refuses, not when it accepts.
        refused = not 200 <= status < 300
        headers = {"Retry-After": b["retry_after"]} if b["retry_after"] and refused else {}
        body, ctype = _answer_body(status, b["body"])
        self._send(status, body, ctype, headers, b["trickle_ms"])

    def _reset_connection(self) -> None:
        # Linger 0 makes close() send RST, which is what a provider crash looks like to the client.
        # Closing here, before socketserver's graceful shutdown(SHUT_WR), avoids sending a FIN first.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _answer_body(status: int, mode: str) -> tuple[bytes, str]:
    if status in (204, 304):  # these statuses must not carry a body
        return b"", ""
    if not 200 <= status < 300:
        phrase = BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
        return json.dumps({"message": phrase}).encode(), "application/json"
    if mode == "text":
        return b"ok", "text/plain"
    return json.dumps({"message": "Accepted", "messageId": str(uuid.uuid4())}).encode(), "application/json"


def _public(delivery: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in delivery.items() if k != "raw"}
    out["body"] = delivery["raw"].decode("utf-8", "replace")
    return out


class Receiver:
    """In-process receiver: `with Receiver(delay_ms=50) as r: post(r.url, ...)`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, signing_secret: str = "", **behaviour: Any) -> None:
        """`signing_secret`: `whsec_...` (several separated by spaces); then unsigned or badly signed POSTs get 401."""
        self._store = Store(behaviour)
        signatures = SignatureCheck(signing_secret) if signing_secret.strip() else None
        self._server = ReceiverHTTPServer((host, port), self._store, signatures)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/webhook"

    def start(self) -> Receiver:
        # A short poll interval keeps stop() fast; shutdown() waits for the next poll tick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.drop_connections()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def deliveries(self) -> list[dict[str, Any]]:
        return self._store.deliveries()

    def stats(self) -> dict[str, int]:
        return self._store.stats()

    def set_behaviour(self, **kw: Any) -> dict[str, Any]:
        return self._store.set_behaviour(kw)

    def reset(self) -> None:
        self._store.reset()

    def count_by_key(self) -> dict[str | None, int]:
        return self._store.count_by_key()
