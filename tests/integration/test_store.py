"""The messages table: claims, guarded updates, the seed's insert, migrations."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from messaging.errors import StopNotReplicated
from messaging.delivery import rules
from messaging.domain.message import Status
from messaging.postgres import migrations
from messaging.postgres.queries import QUERIES
from messaging.redis import keys
from messaging.redis.switch import Switch

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def test_the_seeds_insert_statement_works_unchanged(db):
    db.execute(
        "INSERT INTO messages (id, content, recipient_phone_number, sending_status, created_at, updated_at) "
        "VALUES (gen_random_uuid(), 'Hello from the seed', '+905551234567', 0, now(), now())"
    )
    assert db.execute("SELECT count(*) AS n FROM messages WHERE sending_status = 0").fetchone()["n"] == 1


@pytest.mark.parametrize(
    ("content", "phone"),
    [("", "+905551234567"), ("x" * 161, "+905551234567"), ("hi", "905551234567"), ("hi", "+05551234567"), ("hi", "+1234567")],
)
def test_the_table_refuses_content_and_numbers_outside_the_rules(db, content, phone):
    with pytest.raises((psycopg.errors.CheckViolation, psycopg.errors.StringDataRightTruncation)):
        db.execute("INSERT INTO messages (content, recipient_phone_number) VALUES (%s, %s)", (content, phone))


def test_migrate_is_idempotent(database_url):
    assert migrations.migrate(database_url) == []


def test_migrate_is_safe_when_two_processes_run_it_at_once(database_url):
    fresh = f"{database_url}_twin"
    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(migrations.migrate, [fresh, fresh]))
        assert sorted(map(len, results)) == [0, len(migrations.migration_files())]
    finally:
        with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{fresh.rsplit("/", 1)[1]}" WITH (FORCE)')


def test_demo_data_loads_once(database_url, db):
    assert migrations.load_demo_data(database_url) == 43
    assert migrations.load_demo_data(database_url) == 0
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 43
    assert db.execute("SELECT count(*) AS n FROM message_attempts").fetchone()["n"] == 3, "the failed and the sent one's, once"
    assert db.execute("SELECT count(*) AS n FROM delivery_receipts").fetchone()["n"] == 1, "the sent one's, once"
    assert db.execute("SELECT count(*) AS n FROM message_events").fetchone()["n"] == 3, "the failed and the sent one's, once"


def test_a_claim_takes_the_batch_size_oldest_first(runtime, make_message):
    ids = [make_message(created_at=T0 + timedelta(minutes=m)) for m in (3, 1, 2, 0)]
    claims = runtime.records.claim_due(2)
    assert [c.message_id for c in claims] == [ids[3], ids[1]]
    assert len({c.token for c in claims}) == 2


def test_a_claim_skips_messages_not_due_yet_and_other_statuses(runtime, make_message):
    later = make_message(next_attempt_at=datetime.now(timezone.utc) + timedelta(hours=1))
    make_message(sending_status=1, sent_at=T0)
    make_message(sending_status=2)
    due = make_message()
    assert [c.message_id for c in runtime.records.claim_due(10)] == [due]
    assert later not in [c.message_id for c in runtime.records.claim_due(10)]


def test_two_batches_at_the_same_moment_never_claim_the_same_message(runtime, make_message):
    for _ in range(200):
        make_message()
    barrier = threading.Barrier(4)

    def claim_repeatedly():
        barrier.wait()
        claimed = []
        while batch := runtime.records.claim_due(7):
            claimed += [c.message_id for c in batch]
            for claim in batch:  # as a worker would, so the next claim is not held back
                runtime.records.start_sending(claim.message_id, claim.token)
        return claimed

    with ThreadPoolExecutor(4) as pool:
        results = [f.result() for f in [pool.submit(claim_repeatedly) for _ in range(4)]]
    everything = [m for r in results for m in r]
    assert len(everything) == len(set(everything)) == 200


def test_two_batch_runs_at_once_enqueue_each_message_once(runtime, make_message):
    for _ in range(30):
        make_message()
    enqueued = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def enqueue(claims):
        with lock:
            enqueued.extend(c.message_id for c in claims)
        for claim in claims:  # as a worker would, so the next batch is not held back
            runtime.records.start_sending(claim.message_id, claim.token)

    def batch():
        barrier.wait()
        for _ in range(20):
            rules.run_batch(runtime.ports, enqueue)

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(batch) for _ in range(2)]:
            future.result()
    assert len(enqueued) == len(set(enqueued)) == 30


def test_a_claim_leaves_out_as_many_as_earlier_claims_still_wait_for_a_worker(runtime, make_message):
    ids = [make_message(created_at=T0 + timedelta(seconds=n)) for n in range(10)]
    first = runtime.records.claim_due(4)
    assert runtime.records.claim_due(4) == [], "four claims wait in the queue already"
    for claim in first[:3]:
        runtime.records.start_sending(claim.message_id, claim.token)
    assert [c.message_id for c in runtime.records.claim_due(4)] == ids[4:7]


def test_only_a_message_in_sending_can_be_marked_sent(runtime, make_message, db):
    pending = make_message()
    sent = make_message(sending_status=1, sent_at=T0, webhook_message_id="old")
    assert not runtime.records.mark_sent(pending, uuid.uuid4(), datetime.now(timezone.utc), "x")
    assert not runtime.records.mark_sent(sent, uuid.uuid4(), datetime.now(timezone.utc), "new")
    row = db.execute("SELECT sending_status, webhook_message_id FROM messages WHERE id = %s", (sent,)).fetchone()
    assert row == {"sending_status": 1, "webhook_message_id": "old"}


def test_a_late_writer_of_an_expired_claim_cannot_mark_the_message_sent(runtime, make_message, db):
    message_id = make_message()
    [first] = runtime.records.claim_due(1)
    runtime.records.start_sending(message_id, first.token)
    db.execute("UPDATE messages SET claimed_at = now() - interval '1 hour', sending_started_at = now() - interval '1 hour'")
    runtime.records.recover_stale_claims(60, max_attempts=5)
    [second] = runtime.records.claim_due(1)
    assert not runtime.records.mark_sent(message_id, first.token, datetime.now(timezone.utc), "late")
    row = db.execute("SELECT sending_status, claim_token FROM messages WHERE id = %s", (message_id,)).fetchone()
    assert row == {"sending_status": 3, "claim_token": second.token}
    assert runtime.records.mark_sent(message_id, second.token, datetime.now(timezone.utc), "ok")


def test_a_claim_starts_sending_once_and_only_with_its_token(runtime, make_message):
    message_id = make_message()
    [claim] = runtime.records.claim_due(1)
    assert runtime.records.start_sending(message_id, uuid.uuid4()) is None
    assert runtime.records.start_sending(message_id, claim.token) is not None
    assert runtime.records.start_sending(message_id, claim.token) is None


def test_a_released_claim_is_pending_again_and_its_old_token_is_dead(runtime, make_message, db):
    message_id = make_message()
    [claim] = runtime.records.claim_due(1)
    assert runtime.records.release_claim(message_id, claim.token)
    assert db.execute("SELECT sending_status FROM messages WHERE id = %s", (message_id,)).fetchone()["sending_status"] == 0
    assert runtime.records.start_sending(message_id, claim.token) is None


def test_stale_claims_return_to_pending_and_fresh_ones_stay(runtime, make_message, db):
    old = make_message(sending_status=3, claimed_at=datetime.now(timezone.utc) - timedelta(minutes=10), claim_token=uuid.uuid4())
    fresh = make_message(sending_status=3, claimed_at=datetime.now(timezone.utc), claim_token=uuid.uuid4())
    assert runtime.records.recover_stale_claims(300, 5) == [old]
    statuses = {r["id"]: r["sending_status"] for r in db.execute("SELECT id, sending_status FROM messages")}
    assert statuses == {old: Status.PENDING, fresh: Status.SENDING}


def test_a_stale_claim_that_had_started_sending_counts_as_an_attempt(runtime, make_message, db):
    long_ago = datetime.now(timezone.utc) - timedelta(minutes=10)
    started = make_message(
        sending_status=3, claimed_at=long_ago, sending_started_at=long_ago, claim_token=uuid.uuid4(), attempts=1
    )
    last_try = make_message(
        sending_status=3, claimed_at=long_ago, sending_started_at=long_ago, claim_token=uuid.uuid4(), attempts=4
    )
    runtime.records.recover_stale_claims(300, 5)
    rows = {r["id"]: r for r in db.execute("SELECT id, sending_status, attempts, last_error FROM messages")}
    assert (rows[started]["sending_status"], rows[started]["attempts"]) == (0, 2)
    assert (rows[last_try]["sending_status"], rows[last_try]["attempts"]) == (2, 5)
    assert rows[last_try]["last_error"] == "claim expired while sending"


def test_the_batch_does_nothing_while_sending_is_stopped(runtime, settings, make_message):
    make_message()
    runtime.switch.set_enabled(False)
    result = rules.run_batch(runtime.ports, lambda claims: pytest.fail("enqueued while stopped"))
    assert result.enabled is False


def test_auto_start_decides_only_while_nobody_has_touched_the_switch(runtime, settings):
    assert runtime.switch.is_enabled() is True
    runtime.switch.set_enabled(False)
    assert runtime.switch.is_enabled() is False
    runtime.redis.delete(keys.ENABLED)
    off_by_default = Switch(runtime.redis, auto_start=False)
    assert off_by_default.is_enabled() is False


def test_queries_use_the_indexes_not_a_table_scan(db, make_message):
    for _ in range(50):
        make_message()
    db.execute("ANALYZE messages")
    db.execute("SET enable_seqscan = off")
    for query in ("claim_due_messages", "list_sent"):
        statement = QUERIES[query]
        plan = db.execute("EXPLAIN " + statement, {"limit": 2, "offset": 0}).fetchall()
        text = "\n".join(row["QUERY PLAN"] for row in plan)
        assert "Index" in text and "Seq Scan on messages" not in text, text
    db.execute("RESET enable_seqscan")


CLAIM_STATEMENT_PARAMETERS = {
    "delay": 0, "sent_at": T0, "webhook_message_id": "w-1", "attempted": 1, "attempt": 1, "trigger": "first",
    "started_at": T0, "duration_ms": 1.0, "http_status": 200, "error_class": None, "retry_after_seconds": None,
    "answer": None, "log_attempt": True, "final": False, "max_attempts": 5, "error": "x", "started": False,
    "receipts": True, "callbacks": True,
}


@pytest.mark.parametrize("name", ["start_sending", "release_claim", "mark_sent", "record_failed_attempt"])
def test_a_claims_statements_find_its_row_by_primary_key_whatever_the_statistics(db, name):
    db.execute(
        "INSERT INTO messages (content, recipient_phone_number) "
        "SELECT 'message ' || n, '+90532' || lpad(n::text, 7, '0') FROM generate_series(1, 20000) AS n"
    )
    db.execute("ANALYZE messages")  # statistics taken while no claim is in flight, as after a quiet hour
    db.execute(
        "UPDATE messages SET sending_status = 3, claimed_at = now(), claim_token = gen_random_uuid() "
        "WHERE id IN (SELECT id FROM messages LIMIT 2000)"
    )
    claimed = db.execute("SELECT id, claim_token FROM messages WHERE sending_status = 3 LIMIT 1").fetchone()
    parameters = {**CLAIM_STATEMENT_PARAMETERS, "id": claimed["id"], "token": claimed["claim_token"]}
    plan = "\n".join(row["QUERY PLAN"] for row in db.execute(f"EXPLAIN (COSTS OFF) {QUERIES[name]}", parameters))
    assert "messages_pkey" in plan, plan
    assert "messages_claimed_idx" not in plan, plan


def test_a_stop_no_replica_acknowledged_is_kept_but_said_to_be_unsafe(runtime):
    """With Sentinels a stop waits for a replica (WAIT); this Redis has none."""
    replicated = Switch(runtime.redis, auto_start=True, replicated=True)
    with pytest.raises(StopNotReplicated):
        replicated.set_enabled(False)
    assert replicated.is_enabled() is False, "the master holds the stop all the same"
    replicated.set_enabled(True)  # a start waits for nobody
    assert replicated.is_enabled() is True
