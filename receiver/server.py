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

from receiver.behaviour import SignatureCheck, Store
from receiver.callbacks import PATH as CALLBACKS_PATH
from receiver.callbacks import CallbackLog
from receiver.receipts import ReceiptSender

log = logging.getLogger("receiver")

CONTROL_PREFIX = "/_receiver/"


class ReceiverHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 resets connections under bursts
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        store: Store,
        signatures: SignatureCheck | None = None,
        receipts: ReceiptSender | None = None,
        callbacks: CallbackLog | None = None,
    ) -> None:
        self.store = store
        self.callbacks = callbacks or CallbackLog()
        self.signatures = signatures
        self.receipts = receipts
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
        elif self.path == CONTROL_PREFIX + "receipts":
            self._send_json(200, self.server.receipts.sent() if self.server.receipts else [])
        elif self.path == CONTROL_PREFIX + "callbacks":
            self._send_json(200, self.server.callbacks.taken())
        else:
            self._send_json(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            self._send_json(411, {"message": "Content-Length required"})
        elif self.path.startswith(CONTROL_PREFIX):
            self._control(raw)
        elif self.path == CALLBACKS_PATH:
            self._send(self.server.callbacks.take(raw, {k.lower(): v for k, v in self.headers.items()}))
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
        accepted = status is not None and 200 <= status < 300
        message_id = str(uuid.uuid4())
        if accepted and b["body"] == "json" and self.server.receipts is not None:
            # Scheduled before the answer: with receipt_delay_ms under delay_ms, the receipt comes first.
            self.server.receipts.schedule(b["receipt_url"], message_id, b["receipt_outcome"], b["receipt_delay_ms"])
        if b["delay_ms"]:
            time.sleep(b["delay_ms"] / 1000)
        if status is None:
            self._reset_connection()
            return
        # A provider asks to wait when it refuses, not when it accepts.
        headers = {"Retry-After": b["retry_after"]} if b["retry_after"] and not accepted else {}
        body, ctype = _answer_body(status, b["body"], message_id)
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


def _answer_body(status: int, mode: str, message_id: str) -> tuple[bytes, str]:
    if status in (204, 304):  # these statuses must not carry a body
        return b"", ""
    if not 200 <= status < 300:
        phrase = BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
        return json.dumps({"message": phrase}).encode(), "application/json"
    if mode == "text":
        return b"ok", "text/plain"
    return json.dumps({"message": "Accepted", "messageId": message_id}).encode(), "application/json"


def _public(delivery: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in delivery.items() if k != "raw"}
    out["body"] = delivery["raw"].decode("utf-8", "replace")
    return out
