"""Counts by status for /messaging/status and /metrics: one count per period however many requests arrive."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from messaging import store
from messaging.counts import StatusCounts
from messaging.models import Status
from tests.helpers import wait_for

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def count_queries(monkeypatch) -> list[int]:
    """Each run of the count-by-status query (the real one runs: this only notes it)."""
    runs: list[int] = []
    real = store.count_by_status
    lock = threading.Lock()

    def counted(pool):
        with lock:
            runs.append(1)
        return real(pool)

    monkeypatch.setattr(store, "count_by_status", counted)
    return runs


def messages_gauge(text: str, status: str) -> float:
    prefix = f'messaging_messages{{status="{status}"}} '
    return float(next(line for line in text.splitlines() if line.startswith(prefix))[len(prefix):])


def test_status_and_metrics_from_two_api_processes_count_once_per_period(make_app, make_message, count_queries):
    for status in (Status.PENDING, Status.PENDING, Status.SENT):
        make_message(sending_status=status)
    clients = [make_app().test_client() for _ in range(2)]  # two API processes sharing one Redis

    for n in range(20):
        client = clients[n % 2]
        assert client.get("/messaging/status").get_json()["counts"] == {"pending": 2, "sending": 0, "sent": 1, "failed": 0, "canceled": 0}
        assert messages_gauge(client.get("/metrics").get_data(as_text=True), "pending") == 2

    assert len(count_queries) == 1


def test_concurrent_first_requests_wait_for_one_count(make_app, make_message, count_queries):
    make_message()
    clients = [make_app().test_client() for _ in range(2)]
    together = threading.Barrier(8)

    def status(n: int) -> dict:
        together.wait()
        return clients[n % 2].get("/messaging/status").get_json()["counts"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(status, range(8)))

    assert all(counts["pending"] == 1 for counts in answers)
    assert len(count_queries) == 1


def test_counts_are_counted_again_within_their_max_age(runtime, make_message, count_queries):
    counts = StatusCounts(runtime.pool, runtime.cache, max_age=3.0)
    make_message()
    assert counts.get()[Status.PENDING] == 1
    make_message()
    assert counts.get()[Status.PENDING] == 1, "the count made a moment ago"

    wait_for(lambda: counts.get()[Status.PENDING] == 2, timeout=10, what="a count made afresh")
    assert len(count_queries) == 2


def test_with_redis_down_each_process_still_counts_once_per_period(make_app, make_message, count_queries):
    make_message()
    client = make_app(redis_url=CLOSED_PORT_REDIS, broker_url=CLOSED_PORT_REDIS).test_client()

    for _ in range(10):
        text = client.get("/metrics").get_data(as_text=True)
        assert messages_gauge(text, "pending") == 1
        assert 'messaging_dependency_up{dependency="redis"} 0.0' in text

    assert len(count_queries) == 1
