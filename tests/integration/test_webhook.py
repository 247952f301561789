"""WebhookClient against a small HTTP server in a thread: what it sends and how it reads answers."""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import certifi
import pytest
import urllib3

from messaging.webhook import DeliveryFailed, WebhookClient


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connections can be counted

    def do_POST(self) -> None:
        server = self.server
        self.rfile.read(int(self.headers["Content-Length"]))
        received = {name.lower(): value for name, value in self.headers.items()}
        server.seen.append((self.path, received, self.client_address[1]))
        time.sleep(server.delay)
        status, answer_headers = server.answer
        self.send_response(status)
        for name, value in {**answer_headers, "Content-Length": "0"}.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as running:
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


def test_a_header_http_refuses_fails_for_good_without_the_key_in_the_reason(server):
    failure = send(WebhookClient(f"{base_url(server)}/hook", "secret\n", 5.0))
    assert not failure.transient and "secret" not in failure.reason and server.seen == []


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
