"""Counts by status for /messaging/status and /metrics: one count per period however many requests arrive."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from messaging.domain.message import Status
from messaging.postgres.records import Records
from messaging.redis import keys, shared_counts
from messaging.redis.shared_counts import Remembered, StatusCounts
from tests.helpers import wait_for

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def count_queries(monkeypatch) -> list[int]:
    """Each run of the count-by-status query (the real one runs: this only notes it)."""
    runs: list[int] = []
    real = Records.count_by_status
    lock = threading.Lock()

    def counted(records):
        with lock:
            runs.append(1)
        return real(records)

    monkeypatch.setattr(Records, "count_by_status", counted)
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
    counts = StatusCounts(runtime.records, Remembered(runtime.redis), max_age=3.0)
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


# Recounting off the request path ------------------------------------------------------------------


def end_period(cache, name: str) -> None:
    """What the claim's expiry does at the end of a period, without waiting for it."""
    cache.client.delete(f"{keys.REMEMBERED_PREFIX}{name}:computing")


def test_once_a_result_stands_no_caller_waits_for_a_slow_recount(runtime):
    cache = Remembered(runtime.redis)
    assert cache.get("slow", 10, lambda: 1) == 1
    end_period(cache, "slow")
    started, release = threading.Event(), threading.Event()

    def slow_count() -> int:
        started.set()
        release.wait(30)
        return 2

    # The caller that claims the period starts the recount and gets the standing result at once:
    # were it counting itself, it would block until `release`, which is set only after it returned.
    assert cache.get("slow", 10, slow_count) == 1
    assert started.wait(10), "the recount started"
    assert cache.get("slow", 10, slow_count) == 1, "the others too, while it runs"
    release.set()
    wait_for(lambda: cache.get("slow", 10, slow_count) == 2, timeout=10, what="the recount's result")


def test_a_failed_recount_leaves_the_result_standing_and_the_next_caller_tries_again(runtime):
    cache = Remembered(runtime.redis)
    claim = f"{keys.REMEMBERED_PREFIX}flaky:computing"
    assert cache.get("flaky", 10, lambda: 1) == 1
    end_period(cache, "flaky")
    tries = []

    def failing() -> int:
        tries.append(1)
        raise RuntimeError("the database went away")

    assert cache.get("flaky", 10, failing) == 1
    wait_for(lambda: tries and not cache.client.exists(claim), timeout=10, what="the failed recount to let go")
    assert cache.get("flaky", 10, lambda: 3) == 1, "the standing result; this caller recounts"
    wait_for(lambda: cache.get("flaky", 10, lambda: 4) == 3, timeout=10, what="the retried recount")


def test_a_costly_count_is_recounted_less_often(runtime, monkeypatch):
    monkeypatch.setattr(shared_counts, "RECOUNT_COST_FACTOR", 10)
    cache = Remembered(runtime.redis)
    key = f"{keys.REMEMBERED_PREFIX}costly"

    def count_taking_half_a_second() -> int:
        time.sleep(0.5)  # the cost being measured, not a wait for readiness
        return 1

    assert cache.get("costly", 0.2, count_taking_half_a_second) == 1
    assert 4_000 < cache.client.pttl(f"{key}:computing") <= 10 * 600, "ten times the cost, not 0.1 s"
    assert cache.client.pttl(key) > 8_000, "the result outlives the next recount"

    # The next claim, made before any recount ends, lasts as long: the cost is kept in Redis.
    end_period(cache, "costly")
    release = threading.Event()
    assert cache.get("costly", 0.2, lambda: release.wait(30) and 2) == 1
    assert cache.client.pttl(f"{key}:computing") > 4_000
    release.set()
