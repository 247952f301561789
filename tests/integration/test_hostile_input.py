"""Text a provider sends back reaches a log line escaped, never raw."""

from __future__ import annotations

import logging
import shlex
import socket
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import replace

import pytest

from messaging.delivery import rules
from messaging.delivery.outcomes import Outcome
from messaging.runtime import Runtime

HOSTILE_REASON = b"Busy\x00\x1b[2J\x7f\x85 event=delivery outcome=sent"


@pytest.fixture
def hostile_provider() -> Iterator[str]:
    """A webhook answering every POST with a 503 whose reason phrase holds control characters."""
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                request = b""
                while b"\r\n\r\n" not in request and (chunk := connection.recv(65536)):
                    request += chunk
                connection.sendall(b"HTTP/1.1 503 " + HOSTILE_REASON + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/webhook"
    stopping.set()
    listener.close()
    thread.join(5)


def test_a_providers_answer_with_control_characters_stays_inside_its_delivery_line(
    settings, make_message, hostile_provider, caplog
):
    caplog.set_level(logging.INFO)
    runtime = Runtime.open(replace(settings, webhook_url=hostile_provider))
    try:
        message_id = make_message()
        [claim] = runtime.records.claim_due(1)
        assert rules.deliver(runtime.ports, message_id, claim.token).outcome is Outcome.RETRY_LATER
    finally:
        runtime.close()

    [line] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("event=delivery ")]
    assert [c for c in line if unicodedata.category(c).startswith("C")] == []
    parsed = dict(pair.split("=", 1) for pair in shlex.split(line))
    assert parsed["outcome"] == "retry_later" and parsed["message_id"] == str(message_id)
    # The webhook client replaces what cannot be shown (NUL, ESC, DEL, NEL) before storing or logging.
    assert parsed["error"] == "HTTP 503 Busy\ufffd\ufffd[2J\ufffd\ufffd event=delivery outcome=sent"
