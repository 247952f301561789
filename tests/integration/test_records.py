"""A message's records on the table: canceled, scheduled sends, encoding and segments stored, bulk
retry, and the migrations that added them. The attempt history is in test_attempt_history.py."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import psycopg
import pytest

from messaging.domain.message import Status
from messaging.postgres import migrations
from messaging.postgres.queries import QUERIES
from messaging.postgres.records import BulkRetry, FailedFilter
from tests.conftest import POSTGRES_URL
from tests.go_service import scratch_database
from tests.integration.records_support import (
    NOW,
    T0,
    row,
)

# --- the migrations ----------------------------------------------------------------------


def test_the_table_takes_status_4_and_refuses_unknown_encodings_and_triggers(db, make_message):
    make_message(sending_status=Status.CANCELED)
    for column, value in (("sending_status", 5), ("encoding", "UTF-8"), ("segments", 0), ("attempt_trigger", "cron")):
        with pytest.raises(psycopg.errors.CheckViolation):
            make_message(**{column: value})


def test_a_seed_insert_is_measured_when_read(db, runtime):
    message_id = uuid.uuid4()
    db.execute(
        "INSERT INTO messages (id, content, recipient_phone_number, sending_status, created_at, updated_at) "
        "VALUES (%s, %s, '+905551234567', 0, now(), now())",
        (message_id, "€" * 81),
    )
    assert (row(db, message_id)["encoding"], row(db, message_id)["segments"]) == (None, None)
    message = runtime.records.get(message_id)
    assert (message.encoding, message.segments) == ("GSM-7", 2)


def test_a_no_transaction_migration_runs_its_statements_one_by_one(db):
    """0006 builds its index CONCURRENTLY, which PostgreSQL refuses inside a transaction: it ran, and left
    a valid index, and running migrate again after a half-built one (an invalid index) finishes the job."""
    index = "messages_pending_due_idx"
    assert db.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (index,)).fetchone()["indisvalid"]
    with scratch_database(POSTGRES_URL) as url:
        migrations.migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", (index,))
            conn.execute("DELETE FROM schema_migrations WHERE version = '0006_claim_index.sql'")
        assert migrations.migrate(url) == ["0006_claim_index.sql"]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (index,)).fetchone()[0]


# --- encoding and segments, scheduled sends, cancel ---------------------------------------


@pytest.mark.parametrize(
    ("content", "encoding", "segments"),
    [("a" * 160, "GSM-7", 1), ("€" * 80, "GSM-7", 1), ("ç" * 70, "UCS-2", 1), ("ş" * 71, "UCS-2", 2), ("😀" * 36, "UCS-2", 2)],
)
def test_encoding_and_segments_are_stored_at_create_time(runtime, db, content, encoding, segments):
    message = runtime.records.insert("+905321234567", content)
    assert (message.encoding, message.segments) == (encoding, segments)
    assert (row(db, message.id)["encoding"], row(db, message.id)["segments"]) == (encoding, segments)


def test_a_scheduled_message_is_not_claimed_before_its_time(runtime, db):
    later = runtime.records.insert("+905321234567", "later", send_at=NOW + timedelta(hours=1))
    now = runtime.records.insert("+905321234567", "now")
    assert row(db, later.id)["next_attempt_at"] == row(db, later.id)["send_at"] == later.send_at
    assert [c.message_id for c in runtime.records.claim_due(10)] == [now.id]
    db.execute("UPDATE messages SET send_at = now() - interval '1 s', next_attempt_at = now() - interval '1 s' WHERE id = %s", (later.id,))
    assert [c.message_id for c in runtime.records.claim_due(10)] == [later.id]


def test_due_messages_go_oldest_first_a_scheduled_one_counting_from_its_send_at(runtime, make_message):
    created_first_due_last = make_message(created_at=T0, send_at=T0 + timedelta(hours=3), next_attempt_at=T0 + timedelta(hours=3))
    created_second = make_message(created_at=T0 + timedelta(hours=1))
    created_third = make_message(created_at=T0 + timedelta(hours=2))
    claims = runtime.records.claim_due(3)
    assert [c.message_id for c in claims] == [created_second, created_third, created_first_due_last]


def test_the_claim_walks_past_no_message_scheduled_for_later(runtime, db, make_message):
    # Messages scheduled for later, created before the due ones: the claim's index must not make
    # it read them (the created_at index did: one row removed by the filter per scheduled message).
    db.execute(
        "INSERT INTO messages (content, recipient_phone_number, created_at, send_at, next_attempt_at) "
        "SELECT 'later', '+905321234567', %(t0)s, now() + interval '1 day', now() + interval '1 day' "
        "FROM generate_series(1, 500)",
        {"t0": T0},
    )
    due = make_message(created_at=T0 + timedelta(hours=1))
    db.execute("ANALYZE messages")
    with db.transaction(force_rollback=True):
        db.execute("SET LOCAL enable_seqscan = off")
        db.execute("SET LOCAL enable_bitmapscan = off")
        explained = db.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["claim_due_messages"], {"limit": 10})
        plan = explained.fetchone()["QUERY PLAN"][0]["Plan"]
    scans = list(_nodes(plan))
    [walk] = [node for node in scans if node.get("Index Name") == "messages_pending_due_idx"]
    assert (walk["Actual Rows"], walk.get("Rows Removed by Filter", 0)) == (1, 0), json.dumps(walk)
    assert [c.message_id for c in runtime.records.claim_due(10)] == [due]


def _nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def test_a_pending_message_can_be_canceled_and_is_never_claimed(runtime, make_message, db):
    pending = make_message(attempts=2)
    canceled = runtime.records.cancel(pending)
    assert canceled.status is Status.CANCELED and row(db, pending)["sending_status"] == 4
    assert runtime.records.claim_due(10) == []
    assert runtime.records.count_by_status()[Status.CANCELED] == 1


@pytest.mark.parametrize("status", [Status.SENDING, Status.SENT, Status.FAILED, Status.CANCELED], ids=lambda s: s.label)
def test_only_a_pending_message_can_be_canceled(runtime, make_message, db, status):
    message_id = make_message(sending_status=status)
    assert runtime.records.cancel(message_id) is None
    assert row(db, message_id)["sending_status"] == status


# --- bulk retry -------------------------------------------------------------------------


@pytest.fixture
def failures(make_message):
    """Six failed messages an hour apart, newest last; errors alternate between 503 and 400."""

    def make():
        return [
            make_message(
                sending_status=Status.FAILED, attempts=5, updated_at=T0 + timedelta(hours=n),
                last_error="HTTP 503 Service Unavailable" if n % 2 == 0 else "HTTP 400 Bad Request",
            )
            for n in range(6)
        ]  # fmt: skip

    return make


def test_a_bulk_retry_without_a_filter_takes_every_failed_message(runtime, failures, make_message, db):
    ids = failures()
    other = make_message(sending_status=Status.SENT, sent_at=T0)
    assert runtime.records.retry_failed_matching(FailedFilter()) == BulkRetry(6, 6)
    for message_id in ids:
        stored = row(db, message_id)
        assert (stored["sending_status"], stored["attempts"], stored["attempt_trigger"]) == (0, 0, "manual")
    assert row(db, other)["sending_status"] == Status.SENT


@pytest.mark.parametrize(
    ("which", "picked"),
    [
        (FailedFilter(failed_after=T0 + timedelta(hours=2)), [2, 3, 4, 5]),
        (FailedFilter(failed_before=T0 + timedelta(hours=2)), [0, 1]),
        (FailedFilter(failed_after=T0 + timedelta(hours=1), failed_before=T0 + timedelta(hours=4)), [1, 2, 3]),
        (FailedFilter(error_contains="service unavailable"), [0, 2, 4]),
        (FailedFilter(error_contains="HTTP 503", failed_after=T0 + timedelta(hours=1)), [2, 4]),
        (FailedFilter(limit=2), [4, 5]),
        (FailedFilter(error_contains="%"), []),
    ],
    ids=["after", "before", "between", "error", "error-and-after", "limit-newest-first", "no-wildcards"],
)
def test_a_bulk_retry_takes_only_what_its_filter_matches(runtime, failures, db, which, picked):
    ids = failures()
    assert runtime.records.retry_failed_matching(which) == BulkRetry(len(picked), len(picked))
    pending = {message_id for message_id in ids if row(db, message_id)["sending_status"] == Status.PENDING}
    assert pending == {ids[n] for n in picked}


def test_a_dry_run_only_counts(runtime, failures, db):
    ids = failures()
    assert runtime.records.retry_failed_matching(FailedFilter(error_contains="503"), dry_run=True) == BulkRetry(3, 0)
    assert {row(db, message_id)["sending_status"] for message_id in ids} == {Status.FAILED}
