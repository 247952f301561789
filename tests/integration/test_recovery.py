"""Claim recovery against the delivery cache: a message whose POST was accepted and cached, but whose
worker lost PostgreSQL before recording it, ends sent, never failed and never POSTed again."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from celery.worker import state as worker_state
from psycopg import sql

from messaging.delivery import rules
from messaging.delivery.ports import CachedDelivery
from messaging.redis import keys
from tests.conftest import POSTGRES_URL, TEST_CONNECTION_NAME
from tests.helpers import wait_for
from worker import tasks

MAX_ATTEMPTS = 3
LONG_AGO = datetime.now(timezone.utc) - timedelta(hours=1)


@pytest.fixture
def settings(base_settings):
    # A claim expires 2.5 s after its POST began: soon after the worker below gives up recording it.
    return replace(base_settings, max_attempts=MAX_ATTEMPTS, claim_timeout_seconds=2.5, webhook_timeout_seconds=2.0)


def message(db, message_id):
    return db.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def attempts_kept(db, message_id):
    return db.execute("SELECT * FROM message_attempts WHERE message_id = %s ORDER BY id", (message_id,)).fetchall()


@contextmanager
def database_away(database_url: str) -> Iterator[None]:
    """PostgreSQL refuses the workers: their connections cut, new ones refused (the test's own stays)."""
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name <> %s",
                (name, TEST_CONNECTION_NAME),
            )
            yield
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))


def test_a_last_attempt_accepted_whose_record_was_lost_is_recovered_as_sent_from_the_cache(
    celery_worker, make_message, receiver, db, cache, database_url
):
    message_id = make_message(attempts=MAX_ATTEMPTS - 1, attempt_trigger="retry")
    receiver.set_behaviour(delay_ms=1500)  # time to take the database away while the POST is open
    tasks.run_batch.delay()
    wait_for(lambda: message(db, message_id)["sending_started_at"], what="the POST to start")
    with database_away(database_url):
        wait_for(lambda: cache.get(keys.sent(message_id)), what="the accepted POST to be cached")
        wait_for(lambda: not worker_state.active_requests, what="the send task to give up recording it")
    stuck = message(db, message_id)
    assert stuck["sending_status"] == 3, "mark_sent failed: the claim is still in flight"
    cached_id = json.loads(cache.get(keys.sent(message_id)))["messageId"]

    # Expired: the claim timeout has passed since the POST began (its design, not a readiness wait).
    wait_for(lambda: message(db, message_id)["sending_started_at"] < db.execute("SELECT now() - interval '2.5 s' AS t")
             .fetchone()["t"], timeout=5, what="the claim to expire")
    receiver.set_behaviour(delay_ms=0)
    tasks.run_batch.delay()
    wait_for(lambda: message(db, message_id)["sending_status"] != 3, what="claim recovery")

    recovered = message(db, message_id)
    assert (recovered["sending_status"], recovered["webhook_message_id"]) == (1, cached_id)
    assert recovered["attempts"] == MAX_ATTEMPTS and recovered["last_error"] is None
    assert [d["headers"]["idempotency-key"] for d in receiver.deliveries()] == [str(message_id)], "POSTed once"
    [kept] = attempts_kept(db, message_id)
    assert (kept["attempt"], kept["error_class"]) == (MAX_ATTEMPTS, None)


def stale_send(make_message, attempts: int):
    return make_message(
        sending_status=3, claimed_at=LONG_AGO, sending_started_at=LONG_AGO, claim_token=uuid.uuid4(), attempts=attempts
    )


def test_a_stale_send_whose_delivery_is_cached_is_recorded_with_the_cached_id_and_time(runtime, make_message, db):
    message_id = stale_send(make_message, attempts=MAX_ATTEMPTS - 1)
    sent_at = LONG_AGO + timedelta(seconds=1)
    runtime.cache.remember(message_id, CachedDelivery(sent_at, "provider-42"))
    result = rules.run_batch(replace(runtime.ports, settings=replace(runtime.settings, send_batch_size=0)), list)
    recovered = message(db, message_id)
    assert (recovered["sending_status"], recovered["webhook_message_id"], recovered["sent_at"]) == (1, "provider-42", sent_at)
    assert recovered["attempts"] == MAX_ATTEMPTS and result.recovered == 1


def test_a_stale_send_the_cache_does_not_know_fails_at_its_last_attempt_as_before(runtime, make_message, db):
    message_id = stale_send(make_message, attempts=MAX_ATTEMPTS - 1)
    rules.run_batch(replace(runtime.ports, settings=replace(runtime.settings, send_batch_size=0)), list)
    recovered = message(db, message_id)
    assert (recovered["sending_status"], recovered["attempts"]) == (2, MAX_ATTEMPTS)
    assert recovered["last_error"] == "claim expired while sending"
    [kept] = attempts_kept(db, message_id)
    assert kept["error_class"] == "claim_expired"
