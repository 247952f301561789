"""The attempt history in message_attempts: each POST kept with its outcome, by the statement that
records the outcome, listed in order, pruned after ATTEMPT_RETENTION_DAYS."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from harness.stack import free_port
from messaging.delivery import rules
from messaging.delivery.outcomes import Outcome
from messaging.delivery.ports import CachedDelivery
from messaging.domain.message import Status, Trigger
from messaging.ops import pruning
from messaging.postgres.records import Records
from messaging.runtime import Runtime
from tests.integration.records_support import (
    NOW,
    an_attempt,
    attempt_rows,
    claimed_and_started,
    row,
)

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
    assert pruning.prune_attempts(runtime.records, 2, batch=10, max_batches=2) == 20
    assert pruning.prune_attempts(runtime.records, 2, batch=10) == 5


# --- attempts written by the delivery rules ---------------------------------------------


def test_a_delivery_keeps_its_attempt_with_the_providers_answer(runtime, make_message, receiver, db):
    message_id = make_message()
    [claim] = runtime.records.claim_due(1)
    before = datetime.now(timezone.utc)
    assert rules.deliver(runtime.ports, message_id, claim.token).outcome is Outcome.SENT
    [kept] = attempt_rows(db, message_id)
    assert (kept["attempt"], kept["trigger"], kept["http_status"], kept["error_class"]) == (1, "scheduled", 202, None)
    assert before <= kept["started_at"] <= datetime.now(timezone.utc)
    assert kept["duration_ms"] > 0
    assert json.loads(kept["answer"])["messageId"] == row(db, message_id)["webhook_message_id"]


def test_a_refused_attempt_and_the_retry_after_it_are_both_kept(runtime, make_message, receiver, db):
    receiver.set_behaviour(fail_first=1, fail_status=503, retry_after=0)
    message_id = make_message()
    for outcome in (Outcome.RETRY_LATER, Outcome.SENT):
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
        assert rules.deliver(closed.ports, message_id, claim.token).outcome is Outcome.RETRY_LATER
    finally:
        closed.close()
    [kept] = attempt_rows(db, message_id)
    assert (kept["http_status"], kept["error_class"], kept["answer"]) == (None, "connection", None)


def test_a_delivery_found_in_the_cache_posts_nothing_and_keeps_no_attempt(runtime, make_message, receiver, db):
    message_id = make_message()
    runtime.cache.remember(message_id, CachedDelivery(NOW, "wh-early"))
    [claim] = runtime.records.claim_due(1)
    assert rules.deliver(runtime.ports, message_id, claim.token).outcome is Outcome.ALREADY_SENT
    assert attempt_rows(db, message_id) == [] and receiver.deliveries() == []
