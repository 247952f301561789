"""A message's records over HTTP: scheduled sends, encoding and segments, cancel, attempt history, bulk retry."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest

from messaging.domain.message import Status
from tests.integration.api_support import PHONE, T0, error_of, row

NOW = datetime.now(timezone.utc)
ZONED = "Must be an ISO 8601 date and time with a time zone, such as 2026-12-01T09:00:00+03:00."


def create(client, content="hi", **fields):
    return client.post("/messaging/messages", json={"recipient_phone_number": PHONE, "content": content, **fields})


# --- scheduled sends ---------------------------------------------------------------------


def test_a_message_with_send_at_is_stored_due_at_that_time(client, db):
    send_at = (NOW + timedelta(days=2)).replace(microsecond=0)
    response = create(client, send_at=send_at.astimezone(timezone(timedelta(hours=3))).isoformat())

    assert response.status_code == 201, response.get_json()
    message = response.get_json()
    assert (message["status"], message["send_at"]) == ("pending", send_at.isoformat())
    stored = row(db, UUID(message["id"]))
    assert stored["send_at"] == stored["next_attempt_at"] == send_at


def test_without_send_at_a_message_is_due_at_once(client, db):
    message = create(client).get_json()
    assert message["send_at"] is None
    assert row(db, UUID(message["id"]))["next_attempt_at"] <= datetime.now(timezone.utc)


@pytest.mark.parametrize(
    ("send_at", "says"),
    [
        ((NOW + timedelta(days=1)).replace(tzinfo=None).isoformat(), ZONED),
        ((NOW - timedelta(hours=1)).isoformat(), "Must not be in the past."),
        ((NOW + timedelta(days=36)).isoformat(), "Must be at most 35 days ahead."),
        ("tomorrow", ZONED),
        (1767250800, ZONED),
        ("99999-01-01T00:00:00Z", ZONED),
    ],
    ids=["no-zone", "past", "too-far", "words", "number", "year-99999"],
)
def test_a_send_at_outside_the_rules_answers_422_naming_it(client, db, send_at, says):
    response = create(client, send_at=send_at)

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error" and error["fields"] == {"send_at": [says]}
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 0


@pytest.mark.parametrize("content", [" ", "\n\t ", "\u2003"], ids=["space", "newline-tab", "em-space"])
def test_whitespace_only_content_answers_422(client, db, content):
    response = create(client, content=content)

    assert response.status_code == 422
    # The schema refuses it before the domain's own rule (messaging/domain/content.py) is reached.
    assert error_of(response)["fields"] == {"content": ["Must hold a character that is not whitespace, and no NUL."]}
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 0


# --- encoding and segments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "encoding", "segments"),
    [("a" * 160, "GSM-7", 1), ("€" * 80, "GSM-7", 1), ("ç" * 70, "UCS-2", 1), ("ş" * 71, "UCS-2", 2), ("😀" * 36, "UCS-2", 2)],
    ids=["160-plain", "80-euro", "70-c-cedilla", "71-s-cedilla", "36-emoji"],
)
def test_each_message_reports_its_encoding_and_segments(client, content, encoding, segments):
    created = create(client, content=content).get_json()
    read = client.get(f"/messaging/messages/{created['id']}").get_json()

    assert (created["encoding"], created["segments"]) == (read["encoding"], read["segments"]) == (encoding, segments)


def test_161_characters_are_refused_as_before(client):
    response = create(client, content="a" * 161)

    assert response.status_code == 422
    assert error_of(response)["fields"] == {"content": ["Must be 1 to 160 characters."]}


def test_a_seed_inserted_message_reports_its_encoding_and_segments_too(client, db):
    message_id = uuid.uuid4()
    db.execute(
        "INSERT INTO messages (id, content, recipient_phone_number, sending_status, created_at, updated_at) "
        "VALUES (%s, %s, %s, 0, now(), now())",
        (message_id, "ç" * 71, PHONE),
    )
    message = client.get(f"/messaging/messages/{message_id}").get_json()
    assert (message["encoding"], message["segments"]) == ("UCS-2", 2)


# --- cancel ------------------------------------------------------------------------------


def test_a_pending_message_is_canceled(client, make_message, db):
    message_id = make_message(send_at=NOW + timedelta(days=1))

    response = client.post(f"/messaging/messages/{message_id}/cancel")

    assert response.status_code == 200
    assert response.get_json()["status"] == "canceled"
    assert row(db, message_id)["sending_status"] == Status.CANCELED


@pytest.mark.parametrize("status", [Status.SENDING, Status.SENT, Status.FAILED, Status.CANCELED], ids=lambda s: s.label)
def test_canceling_anything_but_a_pending_message_answers_409(client, make_message, db, status):
    message_id = make_message(sending_status=status)

    response = client.post(f"/messaging/messages/{message_id}/cancel")

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict" and status.label in error["message"]
    assert row(db, message_id)["sending_status"] == status


@pytest.mark.parametrize("message_id", [str(uuid.uuid4()), "not-a-uuid"], ids=["unknown", "malformed"])
def test_canceling_an_unknown_or_malformed_id_answers_404(client, message_id):
    assert client.post(f"/messaging/messages/{message_id}/cancel").status_code == 404


def test_status_and_metrics_count_canceled_messages(client, make_message):
    for _ in range(2):
        make_message(sending_status=Status.CANCELED)

    assert client.get("/messaging/status").get_json()["counts"]["canceled"] == 2
    assert 'messaging_messages{status="canceled"} 2.0' in client.get("/metrics").get_data(as_text=True)


# --- attempt history ---------------------------------------------------------------------


def insert_attempts(db, message_id, count: int) -> None:
    db.execute(
        "INSERT INTO message_attempts (message_id, attempt, trigger, started_at, duration_ms, http_status, "
        "                              error_class, retry_after_seconds, answer) "
        "SELECT %s, g, CASE WHEN g = 1 THEN 'scheduled' ELSE 'retry' END, %s + g * interval '1 minute', 12.5, "
        "       CASE WHEN g < %s THEN 503 ELSE 202 END, CASE WHEN g < %s THEN 'http_status' END, "
        "       CASE WHEN g < %s THEN 30 END, 'answer ' || g "
        "FROM generate_series(1, %s) AS g",
        (message_id, T0, count, count, count, count),
    )


def test_a_messages_attempts_are_listed_oldest_first_with_every_detail(client, make_message, db):
    message_id = make_message(sending_status=Status.SENT, sent_at=T0, attempts=2)
    insert_attempts(db, message_id, 2)
    insert_attempts(db, uuid.uuid4(), 3)  # another message's

    body = client.get(f"/messaging/messages/{message_id}/attempts").get_json()

    assert body == {
        "data": [
            {"attempt": 1, "trigger": "scheduled", "started_at": "2026-11-01T09:01:00+00:00", "duration_ms": 12.5,
             "http_status": 503, "error_class": "http_status", "retry_after_seconds": 30.0, "answer": "answer 1"},
            {"attempt": 2, "trigger": "retry", "started_at": "2026-11-01T09:02:00+00:00", "duration_ms": 12.5,
             "http_status": 202, "error_class": None, "retry_after_seconds": None, "answer": "answer 2"},
        ],
        "pagination": {"limit": 20, "next_cursor": None},
    }  # fmt: skip


def test_following_next_cursor_walks_every_attempt_once(client, make_message, db):
    message_id = make_message()
    insert_attempts(db, message_id, 7)
    seen, cursor = [], None
    while True:
        query = f"?limit=3&cursor={cursor}" if cursor else "?limit=3"
        body = client.get(f"/messaging/messages/{message_id}/attempts{query}").get_json()
        seen += [attempt["attempt"] for attempt in body["data"]]
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [1, 2, 3, 4, 5, 6, 7]


def test_a_message_without_attempts_has_an_empty_list(client, make_message):
    body = client.get(f"/messaging/messages/{make_message()}/attempts").get_json()
    assert body == {"data": [], "pagination": {"limit": 20, "next_cursor": None}}


@pytest.mark.parametrize("message_id", [str(uuid.uuid4()), "not-a-uuid"], ids=["unknown", "malformed"])
def test_the_attempts_of_an_unknown_message_answer_404(client, message_id):
    assert client.get(f"/messaging/messages/{message_id}/attempts").status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("cursor=abc", "cursor"), ("cursor=-1", "cursor")],
)
def test_bad_attempt_paging_answers_400_naming_it(client, make_message, query, field):
    response = client.get(f"/messaging/messages/{make_message()}/attempts?{query}")

    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {field}


# --- bulk retry --------------------------------------------------------------------------


@pytest.fixture
def failures(make_message):
    return [
        make_message(
            sending_status=Status.FAILED, attempts=5, updated_at=T0 + timedelta(hours=n),
            last_error="HTTP 503 Service Unavailable" if n % 2 == 0 else "HTTP 400 Bad Request",
        )
        for n in range(4)
    ]  # fmt: skip


def pending_ids(db) -> set:
    return {r["id"] for r in db.execute("SELECT id FROM messages WHERE sending_status = 0")}


def test_a_bulk_retry_without_a_body_puts_every_failed_message_back(client, failures, db):
    response = client.post("/messaging/failed/retry")

    assert response.status_code == 200
    assert response.get_json() == {"matched": 4, "retried": 4, "dry_run": False}
    assert pending_ids(db) == set(failures)


def test_a_bulk_retry_takes_what_its_filter_matches(client, failures, db):
    body = {"failed_after": "2026-11-01T11:00:00+01:00", "error_contains": "503", "limit": 10}

    assert client.post("/messaging/failed/retry", json=body).get_json() == {"matched": 1, "retried": 1, "dry_run": False}
    assert pending_ids(db) == {failures[2]}


def test_a_dry_run_counts_and_changes_nothing(client, failures, db):
    body = {"failed_before": "2026-11-01T11:00:00Z", "dry_run": True}

    assert client.post("/messaging/failed/retry", json=body).get_json() == {"matched": 2, "retried": 0, "dry_run": True}
    assert pending_ids(db) == set()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": 10_001}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"failed_after": "2026-11-01T10:00:00"}, "failed_after"),
        ({"failed_before": "yesterday"}, "failed_before"),
        ({"error_contains": ""}, "error_contains"),
        ({"error_contains": "x" * 501}, "error_contains"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"status": "failed"}, "status"),
    ],
    ids=["limit-high", "limit-zero", "limit-text", "no-zone", "words", "empty-text", "long-text", "dry-run-text", "unknown"],
)
def test_a_bad_filter_answers_422_naming_it_and_retries_nothing(client, failures, db, body, field):
    response = client.post("/messaging/failed/retry", json=body)

    assert response.status_code == 422
    assert set(error_of(response)["fields"]) == {field}
    assert pending_ids(db) == set()


# --- the document ------------------------------------------------------------------------


def test_the_new_calls_are_documented_with_examples(client):
    document = client.get("/openapi.json").get_json()
    paths = document["paths"]
    cancel = paths["/messaging/messages/{message_id}/cancel"]["post"]
    assert cancel["responses"]["200"]["content"]["application/json"]["example"]["status"] == "canceled"
    bulk = paths["/messaging/failed/retry"]["post"]
    assert bulk["requestBody"]["content"]["application/json"]["example"]["error_contains"] == "HTTP 400"  # the demo failed message's (sql/demo_data.sql)
    assert bulk["requestBody"].get("required") is not True  # no body: every failed message
    attempt = document["components"]["schemas"]["Attempt"]
    assert attempt["properties"]["trigger"]["enum"] == ["scheduled", "retry", "manual"]
    assert set(attempt["required"]) == set(attempt["properties"])
    assert all("example" in spec for spec in attempt["properties"].values())
    message = document["components"]["schemas"]["Message"]["properties"]
    assert message["encoding"]["enum"] == ["GSM-7", "UCS-2"]
    assert document["components"]["schemas"]["NewMessage"]["properties"]["send_at"]["format"] == "date-time"
    assert "canceled" in document["components"]["schemas"]["Counts"]["required"]
