"""WebhookClient against a small HTTP server in a thread: what it sends and how it reads answers."""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import certifi
import pytest
import urllib3

from messaging.delivery.ports import DeliveryFailed, ErrorClass, NotSent
from messaging.provider.webhook import MAX_ANSWER_BYTES, WebhookClient
from tests.helpers import wait_for


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connections can be counted

    def do_POST(self) -> None:
        server = self.server
        self.rfile.read(int(self.headers["Content-Length"]))
        received = {name.lower(): value for name, value in self.headers.items()}
        server.seen.append((self.path, received, self.client_address[1]))
        time.sleep(server.delay)
        status, answer_headers = server.answer
        body = getattr(server, "answer_body", b"")
        self.send_response(status)
        for name, value in {**answer_headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client stopped reading

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that drops a connection (as the webhook client does with a too long answer)


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    with Server(("127.0.0.1", 0), Handler) as running:
        running.seen, running.delay, running.answer = [], 0.0, (202, {})
        thread = threading.Thread(target=running.serve_forever, daemon=True)
        thread.start()
        yield running
        running.shutdown()


def base_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def send(client: WebhookClient) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as failed:
        client.send(uuid.uuid4(), "+905551111111", "hi")
    return failed.value


def test_the_post_keeps_the_query_and_turns_url_credentials_into_basic_auth(server):
    host = base_url(server).removeprefix("http://")
    client = WebhookClient(f"http://us%40r:p%3Aw@{host}/hook?tenant=7", "", 5.0)
    message_id = uuid.uuid4()
    client.send(message_id, "+905551111111", "hi")
    [(path, headers, _)] = server.seen
    assert path == "/hook?tenant=7"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"us@r:p:w").decode()
    assert headers["idempotency-key"] == str(message_id)
    assert "x-ins-auth-key" not in headers


def test_an_https_url_verifies_certificates_against_certifi():
    client = WebhookClient("https://provider.invalid/v1/sms?x=1", "key", 5.0, pool_size=3)
    assert isinstance(client.pool, urllib3.HTTPSConnectionPool)
    assert (client.pool.cert_reqs, client.pool.ca_certs) == ("CERT_REQUIRED", certifi.where())
    assert (client.pool.port, client.pool.pool.maxsize, client.path) == (443, 3, "/v1/sms?x=1")


def test_a_redirect_is_not_followed_and_fails_for_good(server):
    server.answer = (302, {"Location": "/elsewhere"})
    failure = send(WebhookClient(f"{base_url(server)}/hook", "key", 5.0))
    assert (failure.reason, failure.transient, len(server.seen)) == ("HTTP 302 Found", False, 1)


def test_retry_after_as_an_http_date_becomes_seconds(server):
    server.answer = (503, {"Retry-After": formatdate(time.time() + 120, usegmt=True)})
    failure = send(WebhookClient(f"{base_url(server)}/hook", "key", 5.0))
    assert failure.transient and 115 <= failure.retry_after <= 120


def test_a_header_http_refuses_is_not_sent_and_names_its_setting_without_the_key(server):
    with pytest.raises(NotSent) as refused:
        WebhookClient(f"{base_url(server)}/hook", "secret\n", 5.0).send(uuid.uuid4(), "+90", "hi")
    assert refused.value.setting == "WEBHOOK_AUTH_KEY" and server.seen == []
    assert "secret" not in str(refused.value) and refused.value.__cause__ is None


def test_more_senders_than_connections_wait_for_one_without_warnings(server, caplog):
    server.delay = 0.05
    client = WebhookClient(f"{base_url(server)}/hook", "key", 5.0, pool_size=2)
    senders = [threading.Thread(target=client.send, args=(uuid.uuid4(), "+90", "hi")) for _ in range(8)]
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
    assert len(server.seen) == 8
    assert len({port for _, _, port in server.seen}) == 2, "two kept-alive connections, none discarded"
    assert caplog.records == []


class TricklingServer:
    """Answers every request one byte at a time, `pause` apart: the status line too when `from_start`."""

    ANSWER = b'HTTP/1.1 202 Accepted\r\nContent-Length: 40\r\n\r\n{"message":"Accepted","messageId":"t-1"}'

    def __init__(self, pause: float, from_start: bool) -> None:
        self.pause, self.from_start = pause, from_start
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.cut_after: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        started = time.monotonic()
        with conn:
            _read_request(conn)
            head, body = self.ANSWER.split(b"\r\n\r\n")
            slow = self.ANSWER if self.from_start else body
            if not self.from_start:
                conn.sendall(head + b"\r\n\r\n")
            try:
                for byte in slow:
                    time.sleep(self.pause)
                    conn.sendall(bytes([byte]))
            except OSError:
                self.cut_after.append(time.monotonic() - started)

    def close(self) -> None:
        self.listener.close()


def _read_request(conn: socket.socket) -> None:
    """The whole request, body too: closing with unread bytes sends a reset, which can beat the answer."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = conn.recv(65536)
        if not chunk:
            return
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length and (chunk := conn.recv(65536)):
        body += chunk


@pytest.mark.parametrize("from_start", [False, True], ids=["body", "status-line-and-headers"])
def test_an_answer_that_trickles_is_cut_off_at_the_timeout_of_wall_clock(from_start):
    server = TricklingServer(pause=0.1, from_start=from_start)  # every read well inside the timeout
    client = WebhookClient(server.url, "key", 1.0)
    started = time.monotonic()
    failure = send(client)
    elapsed = time.monotonic() - started
    server.close()
    assert (failure.transient, failure.error_class) == (True, ErrorClass.TIMEOUT)
    assert 1.0 <= elapsed < 1.3, "cut at the timeout, from connect to the last byte"
    wait_for(lambda: server.cut_after, timeout=2, what="the provider to see its connection closed")


def test_after_a_cut_the_pool_opens_a_fresh_connection_for_the_next_post(server):
    trickling = TricklingServer(pause=0.5, from_start=False)
    client = WebhookClient(trickling.url, "key", 2.0, pool_size=1)  # room for the second POST on a loaded machine
    send(client)
    trickling.pause = 0
    assert client.send(uuid.uuid4(), "+905551111111", "hi").webhook_message_id == "t-1"
    trickling.close()


def test_an_answer_longer_than_the_limit_is_cut_and_its_connection_not_reused(server):
    server.answer_body = b"x" * (MAX_ANSWER_BYTES + 10)
    client = WebhookClient(f"{base_url(server)}/hook", "key", 5.0, pool_size=1)
    client.send(uuid.uuid4(), "+905551111111", "hi")
    client.send(uuid.uuid4(), "+905551111111", "hi")
    assert len({port for _, _, port in server.seen}) == 2, "the second POST did not read the first one's rest"
