"""The core delivery path with RabbitMQ as the broker: the same code, `CELERY_BROKER_URL=amqp://...`.

Runs against the RabbitMQ on this machine (`TEST_RABBITMQ_URL`, default guest on 127.0.0.1:5672)
and is skipped when none answers. Each test gets queue and exchange names of its own, deleted
afterwards, so it collides neither with other runs nor with anything else on the vhost.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import kombu
import pytest
from celery import Celery

from messaging import store
from messaging.settings import Settings
from tests.helpers import wait_for
from worker import tasks
from worker.factory import create_celery_app

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def _rabbitmq_answers() -> str | None:
    """None when RabbitMQ accepts a connection, else why not."""
    try:
        with kombu.Connection(RABBITMQ_URL, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=3)
    except Exception as error:  # any failure to connect means: no RabbitMQ to test against
        return f"{type(error).__name__}: {error}"
    return None


_unreachable = _rabbitmq_answers()
pytestmark = pytest.mark.skipif(_unreachable is not None, reason=f"RabbitMQ unreachable at {RABBITMQ_URL}: {_unreachable}")


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    # Settings validation accepts the amqp scheme; PostgreSQL and Redis (flag, cache) stay as they are.
    return replace(base_settings, broker_url=RABBITMQ_URL, send_batch_size=2)


@pytest.fixture
def celery_app(settings: Settings) -> Iterator[Celery]:
    """The project's own app on RabbitMQ, routed to a queue (and exchange) no one else uses."""
    app = create_celery_app(settings)
    queue = f"messaging-test-{uuid.uuid4().hex[:12]}"
    app.conf.task_default_queue = queue  # the exchange and routing key default to the same name
    app.set_current()
    yield app
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.queue_delete(queue)
        channel.exchange_delete(queue)


@pytest.fixture
def celery_worker(celery_worker, celery_app: Celery) -> Iterator[object]:
    """The conftest's worker, stopped over the broker (warm shutdown) at the end: on amqp the
    in-process worker's event loop would otherwise sleep up to 10 s before seeing the stop flag."""
    yield celery_worker
    celery_app.control.shutdown(destination=[celery_worker.hostname])


def sent_ids(db):
    return [r["id"] for r in db.execute("SELECT id FROM messages WHERE sending_status = 1 ORDER BY sent_at, id")]


def test_the_app_really_talks_to_rabbitmq(celery_app, celery_worker):
    with celery_app.connection_for_write() as connection:
        assert connection.transport.driver_type == "amqp"
    assert celery_worker.app.connection_for_read().transport.driver_type == "amqp"


def test_each_batch_sends_two_messages_oldest_first_through_rabbitmq(celery_worker, make_message, receiver, db):
    ids = [make_message(created_at=T0 + timedelta(minutes=m)) for m in range(5)]
    tasks.run_batch.delay()
    wait_for(lambda: len(receiver.deliveries()) == 2, what="the first batch")
    first = {d["key"] for d in receiver.deliveries()}
    assert first == {str(ids[0]), str(ids[1])}

    tasks.run_batch.delay()
    wait_for(lambda: len(receiver.deliveries()) == 4, what="the second batch")
    assert {d["key"] for d in receiver.deliveries()} - first == {str(ids[2]), str(ids[3])}
    wait_for(lambda: len(sent_ids(db)) == 4, what="the deliveries to be recorded")
    assert all(d["headers"]["x-ins-auth-key"] == "test-secret-key" for d in receiver.deliveries())


def test_many_batches_at_once_send_every_message_exactly_once_through_rabbitmq(
    celery_worker, make_message, receiver, db
):
    ids = {str(make_message()) for _ in range(30)}
    for _ in range(25):
        tasks.run_batch.delay()
    wait_for(lambda: len(sent_ids(db)) == 30, what="all 30 messages to be sent")
    assert receiver.count_by_key() == {key: 1 for key in ids}


def test_a_send_task_delivered_twice_by_rabbitmq_posts_once(celery_worker, make_message, receiver, db, runtime):
    message_id = make_message()
    [claim] = store.claim_due(runtime.pool, 1)
    for _ in range(2):  # as a redelivery would
        tasks.send_message.apply_async((str(message_id),), task_id=str(claim.token))

    def outcomes():
        return {k: int(v) for k, v in runtime.redis.hgetall("messaging:metrics:deliveries").items()}

    # The duplicate finds the claim in flight (skipped) or, if the first one already
    # finished, the delivery in the cache (already_sent): either way it does not POST.
    wait_for(lambda: sum(outcomes().values()) == 2, what="both tasks to finish")
    assert outcomes().get("sent") == 1
    assert outcomes().get("skipped", 0) + outcomes().get("already_sent", 0) == 1
    assert sent_ids(db) == [message_id]
    assert len(receiver.deliveries()) == 1


def test_a_transient_failure_is_retried_by_a_later_batch_through_rabbitmq(celery_worker, make_message, receiver, db):
    receiver.set_behaviour(fail_first=1, fail_status=503)
    message_id = make_message()
    tasks.run_batch.delay()
    wait_for(lambda: db.execute("SELECT attempts FROM messages WHERE id = %s", (message_id,)).fetchone()["attempts"] == 1,
             what="the failed attempt")
    tasks.run_batch.delay()  # RETRY_BASE_SECONDS is 0 in the tests: due again at once
    wait_for(lambda: sent_ids(db) == [message_id], what="the retry")
    assert receiver.count_by_key() == {str(message_id): 2}


def test_the_worker_answers_a_liveness_ping_over_rabbitmq(celery_app, celery_worker):
    replies = celery_app.control.ping(destination=[celery_worker.hostname], timeout=5)
    assert replies == [{celery_worker.hostname: {"ok": "pong"}}]
