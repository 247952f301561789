"""A real Celery worker, in this process, on the project's own configured app, on Redis or RabbitMQ."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import redis
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker
from celery.exceptions import WorkerShutdown
from celery.worker import WorkController
from flask import Flask
from flask.testing import FlaskClient
from kombu import Exchange, Queue
from kombu.asynchronous import get_event_loop

from api import close_app, create_app
from harness.stack import broker_unreachable
from messaging.redis.flow import RedisFlowControl
from messaging.settings import Settings
from messaging.task_names import BATCH_TASK
from tests.integration.api_support import TOKEN
from tests.integration.callback_support import CallbackReceiver
from worker import tasks
from worker.factory import create_celery_app

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


_unreachable = broker_unreachable(RABBITMQ_URL)
requires_rabbitmq = pytest.mark.skipif(
    _unreachable is not None, reason=f"RabbitMQ unreachable at {RABBITMQ_URL}: {_unreachable}"
)
# Parameters for a `settings` fixture whose tests run once per broker.
BROKERS = ["redis", pytest.param("rabbitmq", marks=requires_rabbitmq)]


def broker_url(broker: str, settings: Settings) -> str:
    return RABBITMQ_URL if broker == "rabbitmq" else settings.redis_url


def _on_rabbitmq(app: Celery) -> bool:
    return app.conf.broker_url.startswith("amqp")


@pytest.fixture
def celery_app(settings: Settings) -> Iterator[Celery]:
    app = create_celery_app(settings)
    # Each test run has a Redis db of its own; the RabbitMQ vhost is shared, so there each
    # test gets a queue (and exchange) no one else uses, deleted afterwards.
    queue = f"messaging-test-{uuid.uuid4().hex[:12]}" if _on_rabbitmq(app) else None
    if queue:
        batches = f"{queue}.batch"
        app.conf.task_default_queue = queue
        app.conf.task_queues = (Queue(queue, Exchange(queue), routing_key=queue), Queue(batches, Exchange(batches), routing_key=batches))
        app.conf.task_routes = {BATCH_TASK: {"queue": batches}}
    app.set_current()
    yield app
    if queue:
        with app.connection_for_write() as connection:
            for name in (queue, batches):
                connection.default_channel.queue_delete(name)
                connection.default_channel.exchange_delete(name)


WORKER_STOP_SECONDS = 15


@pytest.fixture
def celery_worker(celery_app: Celery) -> Iterator[WorkController]:
    """The configured app's worker on the threads pool; `task_always_eager` is not a test of Celery."""
    with start_worker(
        celery_app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=WORKER_STOP_SECONDS
    ) as worker:
        yield worker
        _stop_warm(worker)
    tasks._close_runtime()
    # The event loop is global to kombu, and the next worker adopts whatever loop is left.
    assert get_event_loop() is None, "the worker's stop was cut short: its event loop (and broker socket) is left"


def _stop_warm(worker: WorkController) -> None:
    """Stop the worker as `celery control shutdown` does, from its own loop, and wait until it has.

    Leaving it to start_worker is a cold stop: the loop sees its flag only when it next wakes
    (up to 10 s on amqp), and the threads pool does not wait for running tasks, so this test's
    tasks run on into the next one. A `shutdown` broadcast on top of it can arrive while the
    cold stop cancels the control consumer and cut the stop short: kombu's global event loop,
    still reading this worker's RabbitMQ socket, is then taken over by the next worker.
    """
    stopped = threading.Event()

    def on_shutdown(sender: object, **_: object) -> None:
        if sender is worker:
            stopped.set()

    signals.worker_shutdown.connect(on_shutdown, weak=False)
    try:
        worker.hub.call_soon(_raise_worker_shutdown)  # wakes the loop from this thread
        if not stopped.wait(WORKER_STOP_SECONDS):
            raise RuntimeError(f"the worker did not stop within {WORKER_STOP_SECONDS} s")
    finally:
        signals.worker_shutdown.disconnect(on_shutdown)


def _raise_worker_shutdown() -> None:
    # What the `shutdown` control command raises in the loop: Worker.start turns it into stop().
    raise WorkerShutdown(0)


@pytest.fixture
def make_app(settings: Settings) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test settings, changed by keyword; each is closed after the test."""
    apps: list[Flask] = []

    def make(**changes) -> Flask:
        app = create_app(replace(settings, **changes))
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture(scope="module")
def shared_app(base_settings) -> Iterator[Callable[..., Flask]]:
    """Apps kept for the whole module, by settings: building one costs about 0.1 s."""
    apps: dict[tuple, Flask] = {}

    def get(**changes) -> Flask:
        key = tuple(sorted(changes.items()))
        if key not in apps:
            apps[key] = create_app(replace(base_settings, **changes))
        return apps[key]

    yield get
    for app in apps.values():
        close_app(app)


@pytest.fixture
def client(shared_app, settings) -> FlaskClient:
    return shared_app().test_client()


@pytest.fixture
def token_client(shared_app, settings) -> FlaskClient:
    """A client of the shared app with API_TOKEN set to api_support.TOKEN."""
    return shared_app(api_token=TOKEN).test_client()


@pytest.fixture
def cache(settings) -> Iterator[redis.Redis]:
    """A plain Redis client on the test run's db, for arranging and checking keys."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def document(client) -> dict:
    """The OpenAPI document the app serves."""
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


@pytest.fixture
def make_flow(cache, settings) -> Callable[..., RedisFlowControl]:
    """`make_flow(**changes)`: flow control over the test run's Redis, a breaker that opens after 5 calls."""

    def make(*, hold_in_task_seconds: float = 0.0, **changes) -> RedisFlowControl:
        defaults = dict(breaker_min_calls=5, breaker_failure_ratio=0.7, breaker_open_seconds=0.3, retry_max_seconds=600)
        return RedisFlowControl(
            cache, replace(settings, **{**defaults, **changes}), hold_in_task_seconds=hold_in_task_seconds
        )

    return make


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    """A client's status callback endpoint (tests/integration/callback_support.py)."""
    running = CallbackReceiver()
    yield running
    running.close()
