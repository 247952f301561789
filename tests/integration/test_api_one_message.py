"""One message by id: read (with the delivery cache), retried when failed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest

from messaging.domain.message import Status
from messaging.redis import keys
from tests.integration.api_support import (
    MESSAGE_FIELDS,
    T0,
    error_of,
    row,
)

# --- GET /messaging/messages/<id> ---------------------------------------------------------


def test_a_message_is_read_from_postgresql(client, make_message):
    message_id = make_message(content="stored", sending_status=Status.FAILED, attempts=5, last_error="HTTP 400")

    response = client.get(f"/messaging/messages/{message_id}")

    assert response.status_code == 200
    message = response.get_json()
    assert set(message) == MESSAGE_FIELDS
    assert message["id"] == str(message_id)
    assert (message["status"], message["attempts"], message["last_error"]) == ("failed", 5, "HTTP 400")


def test_a_sent_message_shows_its_delivery_from_postgresql_in_utc(client, make_message, db):
    db.execute("SET TIME ZONE 'Asia/Tokyo'")
    sent_at = datetime(2026, 11, 28, 9, 2, 0, 120000, tzinfo=timezone.utc)
    message_id = make_message(sending_status=Status.SENT, sent_at=sent_at, webhook_message_id="wh-1", attempts=1)

    message = client.get(f"/messaging/messages/{message_id}").get_json()

    assert (message["status"], message["webhook_message_id"]) == ("sent", "wh-1")
    assert message["sent_at"] == "2026-11-28T09:02:00.120000+00:00"


def test_the_delivery_details_come_from_the_redis_cache_when_it_has_them(client, make_message, cache):
    # A worker delivered it and cached the delivery; PostgreSQL has not recorded it yet.
    message_id = make_message(sending_status=Status.SENDING)
    cache.set(keys.sent(message_id), json.dumps({"messageId": "from-cache", "sent_at": "2026-11-28T09:02:00+00:00"}))

    message = client.get(f"/messaging/messages/{message_id}").get_json()

    assert message["status"] == "sent"
    assert message["webhook_message_id"] == "from-cache"
    assert message["sent_at"] == "2026-11-28T09:02:00+00:00"


@pytest.mark.parametrize(
    "entry",
    ['{"messageId": null, "sent_at": "not a time"}', '{"messageId": 5, "sent_at": 7}', "[1, 2]", "not json"],
    ids=["nulls", "wrong-types", "not-an-object", "not-json"],
)
def test_a_damaged_cache_entry_falls_back_to_postgresql_values(client, make_message, cache, entry):
    sent_at = datetime(2026, 11, 28, 9, 2, tzinfo=timezone.utc)
    message_id = make_message(sending_status=Status.SENT, sent_at=sent_at, webhook_message_id="from-db")
    cache.set(keys.sent(message_id), entry)

    response = client.get(f"/messaging/messages/{message_id}")

    assert response.status_code == 200
    message = response.get_json()
    assert (message["webhook_message_id"], message["sent_at"]) == ("from-db", "2026-11-28T09:02:00+00:00")


@pytest.mark.parametrize(
    "message_id",
    [str(uuid4()), "abc", "123", "%00", "5f0c6f2e-2a43-4c0e-9b9e-0c5b7f7b2d1", "x" * 1000, "%F0%9F%98%80", "%ff"],
    ids=["unknown", "word", "digits", "nul", "35-chars", "long", "emoji", "bad-utf8"],
)
def test_an_unknown_or_malformed_id_answers_404(client, message_id):
    response = client.get(f"/messaging/messages/{message_id}")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# --- POST /messaging/messages/<id>/retry --------------------------------------------------


def test_retrying_a_failed_message_makes_it_pending_with_attempts_reset(client, make_message, db):
    message_id = make_message(sending_status=Status.FAILED, attempts=5, next_attempt_at=T0 + timedelta(days=3650))

    response = client.post(f"/messaging/messages/{message_id}/retry")

    assert response.status_code == 200
    message = response.get_json()
    assert set(message) == MESSAGE_FIELDS
    assert (message["id"], message["status"], message["attempts"]) == (str(message_id), "pending", 0)
    stored = row(db, message_id)
    assert (stored["sending_status"], stored["attempts"]) == (Status.PENDING, 0)
    assert stored["next_attempt_at"] <= datetime.now(timezone.utc)  # due at the next batch


def test_a_retried_message_shows_no_error_from_before_the_retry(client, make_message, db):
    message_id = make_message(sending_status=Status.FAILED, attempts=5, last_error="HTTP 500 Internal Server Error")

    retried = client.post(f"/messaging/messages/{message_id}/retry").get_json()

    assert (retried["status"], retried["attempts"], retried["last_error"]) == ("pending", 0, None)
    assert client.get(f"/messaging/messages/{message_id}").get_json()["last_error"] is None
    assert row(db, message_id)["last_error"] is None


@pytest.mark.parametrize("status", [Status.PENDING, Status.SENDING, Status.SENT], ids=lambda s: s.label)
def test_retrying_a_message_that_is_not_failed_answers_409_and_changes_nothing(client, make_message, db, status):
    message_id = make_message(sending_status=status, attempts=2)
    before = row(db, message_id)

    response = client.post(f"/messaging/messages/{message_id}/retry")

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict"
    assert status.label in error["message"]
    assert row(db, message_id) == before


def test_retrying_twice_answers_409_the_second_time(client, make_message):
    message_id = make_message(sending_status=Status.FAILED, attempts=5)

    assert client.post(f"/messaging/messages/{message_id}/retry").status_code == 200
    assert client.post(f"/messaging/messages/{message_id}/retry").status_code == 409


@pytest.mark.parametrize("message_id", [str(uuid4()), "not-a-uuid"], ids=["unknown", "malformed"])
def test_retrying_an_unknown_or_malformed_id_answers_404(client, message_id):
    response = client.post(f"/messaging/messages/{message_id}/retry")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
