"""The configured Celery app with a real worker on the threads pool, on each broker it supports:
Redis, and RabbitMQ (`CELERY_BROKER_URL=amqp://...`, skipped when none answers)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from harness.stack import free_port
from tests.helpers import wait_for
from tests.integration.conftest import BROKERS, broker_url
from worker import tasks
from worker.factory import create_celery_app

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(params=BROKERS)
def settings(request, base_settings):
    return replace(base_settings, send_batch_size=2, broker_url=broker_url(request.param, base_settings))


def sent_ids(db):
    return [r["id"] for r in db.execute("SELECT id FROM messages WHERE sending_status = 1 ORDER BY sent_at, id")]


def test_each_batch_sends_two_messages_oldest_first(celery_worker, make_message, receiver, db):
    ids = [make_message(created_at=T0 + timedelta(minutes=m)) for m in range(5)]
    tasks.run_batch.delay()
    wait_for(lambda: len(receiver.deliveries()) == 2, what="the first batch")
    first = {d["key"] for d in receiver.deliveries()}
    assert first == {str(ids[0]), str(ids[1])}

    newer = make_message(created_at=T0 - timedelta(days=1))  # inserted later, but oldest
    tasks.run_batch.delay()
    wait_for(lambda: len(receiver.deliveries()) == 4, what="the second batch")
    second = {d["key"] for d in receiver.deliveries()} - first
    assert second == {str(newer), str(ids[2])}
    wait_for(lambda: len(sent_ids(db)) == 4, what="the deliveries to be recorded")


def test_many_batches_at_once_send_every_message_exactly_once(celery_worker, make_message, receiver, db):
    ids = {str(make_message()) for _ in range(40)}

    def all_sent_after_ten_more_batches():
        for _ in range(10):
            tasks.run_batch.delay()
        return len(sent_ids(db)) == 40

    wait_for(all_sent_after_ten_more_batches, interval=0.2, what="all 40 messages to be sent")
    assert receiver.count_by_key() == {key: 1 for key in ids}


def test_a_send_task_delivered_twice_posts_once(celery_worker, make_message, receiver, db, runtime):
    message_id = make_message()
    [claim] = runtime.records.claim_due(1)
    for _ in range(2):  # as a broker redelivery would
        tasks.send_message.apply_async((str(message_id),), task_id=str(claim.token))
    def both_done():
        # The delivery is counted with its cache entry, just before PostgreSQL records it.
        outcomes = runtime.redis.hgetall("messaging:metrics:deliveries")
        return sum(int(n) for n in outcomes.values()) == 2 and sent_ids(db) and outcomes

    outcomes = wait_for(both_done, what="both copies of the task")
    # The copy that runs second finds the claim used up (skipped) or the delivery cached.
    assert int(outcomes.get("skipped", 0)) + int(outcomes.get("already_sent", 0)) == 1
    assert outcomes["sent"] == "1"
    assert sent_ids(db) == [message_id]
    assert len(receiver.deliveries()) == 1


def test_a_send_that_starts_after_stop_puts_its_message_back(celery_worker, make_message, receiver, db, runtime):
    message_id = make_message()
    [claim] = runtime.records.claim_due(1)
    runtime.switch.set_enabled(False)
    tasks.send_message.apply_async((str(message_id),), task_id=str(claim.token))
    wait_for(
        lambda: db.execute("SELECT sending_status FROM messages WHERE id = %s", (message_id,)).fetchone()["sending_status"] == 0,
        what="the claim to be released",
    )
    assert receiver.deliveries() == []


def test_the_app_uses_the_configured_broker(celery_app, celery_worker, settings):
    expected = settings.broker_url.split(":")[0]
    with celery_app.connection_for_write() as connection:
        assert connection.transport.driver_type == expected
    assert celery_worker.app.connection_for_read().transport.driver_type == expected


def test_a_transient_failure_is_retried_by_a_later_batch(celery_worker, make_message, receiver, db):
    receiver.set_behaviour(fail_first=1, fail_status=503)
    message_id = make_message()
    tasks.run_batch.delay()
    wait_for(
        lambda: db.execute("SELECT attempts FROM messages WHERE id = %s", (message_id,)).fetchone()["attempts"] == 1,
        what="the failed attempt",
    )
    tasks.run_batch.delay()  # RETRY_BASE_SECONDS is 0 in the tests: due again at once
    wait_for(lambda: sent_ids(db) == [message_id], what="the retry")
    assert receiver.count_by_key() == {str(message_id): 2}


def test_the_worker_answers_a_liveness_ping(celery_app, celery_worker):
    replies = celery_app.control.ping(destination=[celery_worker.hostname], timeout=5)
    assert replies == [{celery_worker.hostname: {"ok": "pong"}}]


def test_a_batch_whose_broker_is_unreachable_gives_its_claims_back_at_once(settings, make_message, db):
    scheme = settings.broker_url.partition(":")[0]
    host = f"127.0.0.1:{free_port()}"
    dead = f"amqp://guest:guest@{host}//" if scheme.startswith("amqp") else f"{scheme}://{host}/0"
    create_celery_app(replace(settings, broker_url=dead)).set_current()
    message_id = make_message()
    before = db.execute("SELECT updated_at FROM messages WHERE id = %s", (message_id,)).fetchone()["updated_at"]
    try:
        assert tasks.run_batch() == 0
    finally:
        tasks._close_runtime()
    row = db.execute("SELECT sending_status, claim_token, updated_at FROM messages WHERE id = %s", (message_id,)).fetchone()
    assert row["updated_at"] > before, "the batch claimed it, then could not enqueue"
    assert (row["sending_status"], row["claim_token"]) == (0, None), "pending again, not held until CLAIM_TIMEOUT_SECONDS"


def test_a_worker_sizes_its_webhook_pool_to_its_own_thread_count(celery_app):
    # `celery worker --concurrency 48` is not in app.conf (32): the pool must follow the worker.
    tasks._close_runtime()
    try:
        tasks._open_worker_runtime(sender=SimpleNamespace(concurrency=48))
        assert tasks.runtime().provider.pool.pool.maxsize == 48
    finally:
        tasks._close_runtime()


def test_batches_and_claim_recovery_run_on_schedule_behind_a_backlog_of_sends(celery_worker, make_message, receiver, db, runtime):
    receiver.set_behaviour(delay_ms=200)  # 4 threads: 20 sends a second, so 1,000 sends queue for 50 s
    for _ in range(1000):
        make_message()
    tasks.enqueue_sends(runtime.records.claim_due(1000))
    expired = uuid.uuid4()
    stale = make_message(sending_status=3, claimed_at=T0, claim_token=expired)
    tasks.run_batch.delay()
    # Recovered, then claimed afresh by the same batch: a new token.
    wait_for(
        lambda: db.execute("SELECT claim_token FROM messages WHERE id = %s", (stale,)).fetchone()["claim_token"] != expired,
        timeout=5,
        what="the batch to recover the stale claim",
    )
    assert len(sent_ids(db)) < 200, "the sends were still queued"
    receiver.set_behaviour(delay_ms=0)


def test_the_beats_prune_entry_deletes_old_attempts_in_batches_through_the_worker(celery_app, celery_worker, db):
    db.execute(
        "INSERT INTO message_attempts (message_id, attempt, trigger, started_at) "
        "SELECT gen_random_uuid(), 1, 'scheduled', now() - g * interval '1 day' FROM generate_series(1, 40) AS g"
    )
    entry = celery_app.conf.beat_schedule["prune"]
    celery_app.send_task(entry["task"], **entry["options"])  # as beat sends it
    # 30 days' retention (the default): the attempts 1 to 29 days old stay (30 is older by now).
    wait_for(lambda: db.execute("SELECT count(*) AS n FROM message_attempts").fetchone()["n"] == 29, what="the prune")
