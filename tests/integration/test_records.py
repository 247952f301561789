"""A message's records on the table: canceled, scheduled sends, encoding and segments stored, bulk retry,
attempt history written with each outcome, and its pruning."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from harness.stack import free_port
from messaging.delivery import rules
from messaging.delivery.ports import CachedDelivery
from messaging.domain.message import Attempt, Status, Trigger
from messaging.ops import pruning
from messaging.postgres import migrations
from messaging.postgres.queries import QUERIES
from messaging.postgres.records import BulkRetry, FailedFilter, Records
from messaging.runtime import Runtime
from tests.conftest import POSTGRES_URL
from tests.go_service import scratch_database

NOW = datetime.now(timezone.utc)
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def row(db, message_id) -> dict:
    return db.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def attempt_rows(db, message_id) -> list[dict]:
    return db.execute("SELECT * FROM message_attempts WHERE message_id = %s ORDER BY id", (message_id,)).fetchall()


def an_attempt(message_id, number=1, trigger=Trigger.SCHEDULED, **changes) -> Attempt:
    values = dict(
        message_id=message_id, attempt=number, trigger=trigger, started_at=NOW, duration_ms=12.5,
        http_status=202, error_class=None, retry_after_seconds=None, answer='{"message": "Accepted"}',
    )  # fmt: skip
    return Attempt(**{**values, **changes})


def claimed_and_started(runtime, make_message, **columns):
    message_id = make_message(**columns)
    [claim] = runtime.records.claim_due(1)
    outgoing = runtime.records.start_sending(message_id, claim.token)
    return message_id, claim.token, outgoing


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


# --- attempt history ---------------------------------------------------------------------


def test_a_delivery_and_its_attempt_are_written_by_one_statement(runtime, make_message, db):
    message_id, token, outgoing = claimed_and_started(runtime, make_message)
    attempt = an_attempt(message_id, outgoing.attempts + 1, outgoing.attempt_trigger)
    assert runtime.records.mark_sent(message_id, token, NOW, "wh-1", attempt=attempt)
    [kept] = attempt_rows(db, message_id)
    assert {key: kept[key] for key in ("attempt", "trigger", "started_at", "duration_ms", "http_status", "error_class", "answer")} == {
        "attempt": 1, "trigger": "scheduled", "started_at": NOW, "duration_ms": 12.5, "http_status": 202,
        "error_class": None, "answer": '{"message": "Accepted"}',
    }  # fmt: skip


def test_an_attempt_that_cannot_be_written_leaves_the_outcome_unwritten_too(runtime, make_message, db):
    # One statement: when the attempt's row fails (a status beyond smallint), so does the delivery's.
    message_id, token, outgoing = claimed_and_started(runtime, make_message)
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        runtime.records.mark_sent(message_id, token, NOW, "wh-1", attempt=an_attempt(message_id, http_status=70_000))
    assert row(db, message_id)["sending_status"] == Status.SENDING
    assert attempt_rows(db, message_id) == []


def test_without_an_attempt_nothing_is_logged(runtime, make_message, db):
    message_id, token, _ = claimed_and_started(runtime, make_message)
    assert runtime.records.mark_sent(message_id, token, NOW, "wh-1", attempted=False)
    assert attempt_rows(db, message_id) == []


def test_a_failed_attempt_is_kept_and_the_next_one_is_a_retry(runtime, make_message, db):
    message_id, token, outgoing = claimed_and_started(runtime, make_message)
    failure = an_attempt(
        message_id, 1, outgoing.attempt_trigger, http_status=503, error_class="http_status",
        retry_after_seconds=30.0, answer="busy",
    )  # fmt: skip
    status = runtime.records.record_failed_attempt(
        message_id, token, error="HTTP 503", retry_in_seconds=0, max_attempts=5, final=False, attempt=failure
    )
    assert status is Status.PENDING
    [kept] = attempt_rows(db, message_id)
    assert (kept["trigger"], kept["http_status"], kept["error_class"], kept["retry_after_seconds"]) == ("scheduled", 503, "http_status", 30.0)
    [claim] = runtime.records.claim_due(1)
    again = runtime.records.start_sending(message_id, claim.token)
    assert (again.attempts, again.attempt_trigger) == (1, Trigger.RETRY)


def test_after_an_operators_retry_the_next_attempt_is_manual(runtime, make_message):
    message_id = make_message(sending_status=Status.FAILED, attempts=5, attempt_trigger="retry")
    runtime.records.retry_failed(message_id)
    [claim] = runtime.records.claim_due(1)
    assert runtime.records.start_sending(message_id, claim.token).attempt_trigger is Trigger.MANUAL


def test_a_claim_that_expired_while_sending_is_kept_as_an_attempt_of_unknown_outcome(runtime, make_message, db):
    long_ago = datetime.now(timezone.utc) - timedelta(minutes=10)
    started = make_message(sending_status=3, claimed_at=long_ago, sending_started_at=long_ago, claim_token=uuid.uuid4(), attempts=1, attempt_trigger="retry")
    never_started = make_message(sending_status=3, claimed_at=long_ago, claim_token=uuid.uuid4())
    assert sorted(runtime.records.recover_stale_claims(300, 5)) == sorted([started, never_started])
    [kept] = attempt_rows(db, started)
    assert (kept["attempt"], kept["trigger"], kept["started_at"], kept["error_class"]) == (2, "retry", long_ago, "claim_expired")
    assert (kept["http_status"], kept["duration_ms"]) == (None, None)
    assert attempt_rows(db, never_started) == []
    assert row(db, never_started)["attempt_trigger"] == "scheduled"


def test_an_answer_is_kept_storable_and_cut_to_1_kib(runtime, make_message, db):
    message_id, token, _ = claimed_and_started(runtime, make_message)
    answer = "nul\x00" + "é" * 2000
    runtime.records.mark_sent(message_id, token, NOW, None, attempt=an_attempt(message_id, answer=answer))
    [kept] = attempt_rows(db, message_id)
    assert kept["answer"].startswith("nul\ufffd")
    assert len(kept["answer"].encode()) <= 1024 and kept["answer"].endswith("é")


def test_attempts_are_listed_in_order_after_a_cursor(runtime, db):
    message_id, other = uuid.uuid4(), uuid.uuid4()
    for n in range(1, 6):
        for owner in (message_id, other):
            db.execute(
                "INSERT INTO message_attempts (message_id, attempt, trigger, started_at) VALUES (%s, %s, 'retry', now())",
                (owner, n),
            )
    first = runtime.records.list_attempts(message_id, limit=3)
    rest = runtime.records.list_attempts(message_id, limit=3, after_id=first[-1].id)
    assert [a.attempt for a in first + rest] == [1, 2, 3, 4, 5]
    assert {a.message_id for a in first + rest} == {message_id}


def test_pruning_takes_the_attempts_past_retention_in_batches(runtime, db):
    db.execute(
        "INSERT INTO message_attempts (message_id, attempt, trigger, started_at) "
        "SELECT gen_random_uuid(), 1, 'scheduled', now() - g * interval '1 hour' FROM generate_series(1, 100) AS g"
    )
    # 100 attempts, 1 to 100 hours old; 2 days' retention keeps the 47 younger than 48 hours.
    assert runtime.records.prune_attempts(older_than_days=2, limit=20) == 20
    assert runtime.records.prune_attempts(older_than_days=2, limit=1000) == 33
    assert runtime.records.prune_attempts(older_than_days=2, limit=1000) == 0
    assert db.execute("SELECT count(*) AS n FROM message_attempts").fetchone()["n"] == 47


def test_a_prune_run_deletes_batch_by_batch_and_stops_after_its_last_batch(runtime, db):
    db.execute(
        "INSERT INTO message_attempts (message_id, attempt, trigger, started_at) "
        "SELECT gen_random_uuid(), 1, 'scheduled', now() - interval '3 days' FROM generate_series(1, 25)"
    )
    assert pruning.prune(runtime.records, 2, batch=10, max_batches=2) == 20
    assert pruning.prune(runtime.records, 2, batch=10) == 5


# --- attempts written by the delivery rules ---------------------------------------------


def test_a_delivery_keeps_its_attempt_with_the_providers_answer(runtime, make_message, receiver, db):
    message_id = make_message()
    [claim] = runtime.records.claim_due(1)
    before = datetime.now(timezone.utc)
    assert rules.deliver(runtime.ports, message_id, claim.token).outcome is rules.Outcome.SENT
    [kept] = attempt_rows(db, message_id)
    assert (kept["attempt"], kept["trigger"], kept["http_status"], kept["error_class"]) == (1, "scheduled", 202, None)
    assert before <= kept["started_at"] <= datetime.now(timezone.utc)
    assert kept["duration_ms"] > 0
    assert json.loads(kept["answer"])["messageId"] == row(db, message_id)["webhook_message_id"]


def test_a_refused_attempt_and_the_retry_after_it_are_both_kept(runtime, make_message, receiver, db):
    receiver.set_behaviour(fail_first=1, fail_status=503, retry_after=0)
    message_id = make_message()
    for outcome in (rules.Outcome.RETRY_LATER, rules.Outcome.SENT):
        [claim] = runtime.records.claim_due(1)
        assert rules.deliver(runtime.ports, message_id, claim.token).outcome is outcome
    failed, sent = attempt_rows(db, message_id)
    assert (failed["attempt"], failed["trigger"], failed["http_status"], failed["error_class"]) == (1, "scheduled", 503, "http_status")
    assert failed["retry_after_seconds"] == 0 and failed["answer"]
    assert (sent["attempt"], sent["trigger"], sent["http_status"]) == (2, "retry", 202)


def test_an_attempt_that_got_no_answer_has_no_status(settings, make_message, db):
    closed = Runtime.open(dataclasses.replace(settings, webhook_url=f"http://127.0.0.1:{free_port()}/webhook"))
    try:
        message_id = make_message()
        [claim] = Records(closed.pool).claim_due(1)
        assert rules.deliver(closed.ports, message_id, claim.token).outcome is rules.Outcome.RETRY_LATER
    finally:
        closed.close()
    [kept] = attempt_rows(db, message_id)
    assert (kept["http_status"], kept["error_class"], kept["answer"]) == (None, "connection", None)


def test_a_delivery_found_in_the_cache_posts_nothing_and_keeps_no_attempt(runtime, make_message, receiver, db):
    message_id = make_message()
    runtime.cache.remember(message_id, CachedDelivery(NOW, "wh-early"))
    [claim] = runtime.records.claim_due(1)
    assert rules.deliver(runtime.ports, message_id, claim.token).outcome is rules.Outcome.ALREADY_SENT
    assert attempt_rows(db, message_id) == [] and receiver.deliveries() == []
