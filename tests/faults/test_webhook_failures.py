"""Every way the webhook can fail, injected for real by the receiver; retry state lives in PostgreSQL."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from messaging.delivery import rules
from messaging.delivery.outcomes import Outcome
from messaging.runtime import Runtime


@pytest.fixture
def settings(base_settings):
    return replace(base_settings, retry_base_seconds=10, retry_max_seconds=600, max_attempts=3, webhook_timeout_seconds=0.5)


def attempt(runtime, message_id):
    [claim] = runtime.records.claim_due(1)
    assert claim.message_id == message_id
    return rules.deliver(runtime.ports, message_id, claim.token).outcome


def row(db, message_id):
    return db.execute("SELECT *, next_attempt_at - now() AS wait FROM messages WHERE id = %s", (message_id,)).fetchone()


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_a_transient_status_returns_the_message_to_pending_with_backoff(runtime, make_message, receiver, db, status):
    receiver.set_behaviour(status=status)
    message_id = make_message()
    assert attempt(runtime, message_id) is Outcome.RETRY_LATER
    recorded = row(db, message_id)
    assert (recorded["sending_status"], recorded["attempts"]) == (0, 1)
    assert recorded["last_error"].startswith(f"HTTP {status}")
    assert 4.5 <= recorded["wait"].total_seconds() <= 10.5  # first backoff: 5 to 10 s with jitter
    assert runtime.records.claim_due(10) == [], "not due before its backoff ends"


def test_retry_after_on_503_is_honoured(runtime, make_message, receiver, db):
    receiver.set_behaviour(status=503, retry_after="120")
    message_id = make_message()
    attempt(runtime, message_id)
    assert 118 <= row(db, message_id)["wait"].total_seconds() <= 120.5


def test_retry_after_on_429_is_capped_by_retry_max(runtime, make_message, receiver, db):
    receiver.set_behaviour(status=429, retry_after="86400")
    message_id = make_message()
    attempt(runtime, message_id)
    assert 598 <= row(db, message_id)["wait"].total_seconds() <= 600.5


@pytest.mark.parametrize("value", ["²", "soon", "Mon, 99 Foo 2026 99:99:99 GMT", "1e9"])
def test_an_unreadable_retry_after_falls_back_to_the_backoff(runtime, make_message, receiver, db, value):
    receiver.set_behaviour(status=503, retry_after=value)
    message_id = make_message()
    assert attempt(runtime, message_id) is Outcome.RETRY_LATER
    recorded = row(db, message_id)
    assert (recorded["sending_status"], recorded["attempts"]) == (0, 1)
    assert 4.5 <= recorded["wait"].total_seconds() <= 10.5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_another_4xx_fails_at_once(runtime, make_message, receiver, db, status):
    receiver.set_behaviour(status=status)
    message_id = make_message()
    assert attempt(runtime, message_id) is Outcome.FAILED
    recorded = row(db, message_id)
    assert (recorded["sending_status"], recorded["attempts"]) == (2, 1)
    assert recorded["last_error"].startswith(f"HTTP {status}")


def test_after_max_attempts_the_message_is_failed_with_its_last_error(runtime, make_message, receiver, db):
    receiver.set_behaviour(status=500)
    message_id = make_message()
    for expected in (Outcome.RETRY_LATER, Outcome.RETRY_LATER, Outcome.FAILED):
        db.execute("UPDATE messages SET next_attempt_at = now() WHERE id = %s", (message_id,))
        assert attempt(runtime, message_id) is expected
    recorded = row(db, message_id)
    assert (recorded["sending_status"], recorded["attempts"], recorded["last_error"]) == (2, 3, "HTTP 500 Internal Server Error")
    assert receiver.stats()["received"] == 3
    assert receiver.stats()["unique"] == 1, "every attempt carries the same Idempotency-Key"


def test_a_timeout_is_transient_and_bounded_by_the_webhook_timeout(runtime, make_message, receiver, db):
    receiver.set_behaviour(delay_ms=3000)
    message_id = make_message()
    started = datetime.now(timezone.utc)
    assert attempt(runtime, message_id) is Outcome.RETRY_LATER
    assert (datetime.now(timezone.utc) - started).total_seconds() < 1.5
    assert row(db, message_id)["last_error"].startswith("Timeout")


def test_a_closed_port_is_transient(settings, make_message, db):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    offline = Runtime.open(replace(settings, webhook_url=f"http://user:pw@127.0.0.1:{closed_port}/hook"))
    try:
        message_id = make_message()
        assert attempt(offline, message_id) is Outcome.RETRY_LATER
    finally:
        offline.close()
    error = row(db, message_id)["last_error"]
    assert error.startswith("ConnectionError") and "pw" not in error


def test_a_reset_connection_is_transient(runtime, make_message, receiver, db):
    receiver.set_behaviour(body="close")
    message_id = make_message()
    assert attempt(runtime, message_id) is Outcome.RETRY_LATER
