"""Flow control toward the provider with real processes: the shared rate limit measured at the
receiver, the circuit breaker through a provider outage (503s, then connection refused), and a 429's
pause honoured by every worker."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests

from harness.stack import BIN, free_port, wait_until_up
from messaging.redis import keys
from messaging.redis.breaker import Breaker
from messaging.redis.client import create_client
from receiver import Receiver
from tests.faults.drain import insert_backlog, sent_count
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

MIN_CALLS = 10
OUTAGE_SECONDS = 10  # the 60 s, shortened; the breaker's times are shortened with it
BREAKER_ENV = dict(
    BREAKER_MIN_CALLS=MIN_CALLS,
    BREAKER_FAILURE_RATIO=0.7,
    BREAKER_WINDOW_SECONDS=60,
    BREAKER_OPEN_SECONDS=1,
    RETRY_MAX_SECONDS=4,  # reopened for 1, 2, 4, 4... seconds
)


def accepted_per_key(receiver: Receiver) -> Counter:
    return Counter(d["key"] for d in receiver.deliveries() if d["status"] == 202)


def attempts_spent(db) -> int:
    return db.execute("SELECT coalesce(sum(attempts), 0) AS n FROM messages").fetchone()["n"]


def densest_second(times: list[float]) -> list[float]:
    """The deliveries of the busiest one-second window, over windows starting at every delivery."""
    times = sorted(times)
    densest: list[float] = []
    end = 0
    for start, at in enumerate(times):
        while end < len(times) and times[end] < at + 1.0:
            end += 1
        if end - start > len(densest):
            densest = times[start:end]
    return densest


def test_three_workers_share_one_rate_limit_measured_at_the_receiver(fault_env, make_stack, db):
    rate, burst = 50, 5
    insert_backlog(db, 1400)
    port = free_port()
    stack = make_stack(
        **{**fault_env, "WEBHOOK_URL": f"http://127.0.0.1:{port}/webhook"},
        RATE_LIMIT_PER_SECOND=rate, RATE_LIMIT_BURST=burst,
    )
    # The provider in a process of its own: the test's threads never delay the times it stamps.
    provider = stack.start("receiver", str(BIN / "python"), "-m", "receiver", "--port", str(port))
    wait_until_up(f"http://127.0.0.1:{port}/_receiver/stats", provider)
    for name in ("w1", "w2", "w3"):
        stack.worker(name)
    stack.beat()

    def deliveries() -> list[dict]:
        return requests.get(f"http://127.0.0.1:{port}/_receiver/deliveries", timeout=10).json()

    wait_for(lambda: len(deliveries()) >= 1250, timeout=90, interval=1, what="25 s of deliveries")
    times = sorted(d["received_at"] for d in deliveries())
    start = times[0] + 2.0  # the first batch, and the workers' first tasks, are behind us
    in_twenty_seconds = sum(start <= t < start + 20 for t in times)
    assert abs(in_twenty_seconds - 20 * rate) <= 0.05 * 20 * rate, in_twenty_seconds
    densest = densest_second(times)
    assert len(densest) <= rate + burst, [round(t - times[0], 3) for t in densest]
    assert requests.get(f"http://127.0.0.1:{port}/_receiver/stats", timeout=10).json()["duplicates"] == 0


def breaker_outage(db, stack, redis_url: str, restore) -> None:
    """500 messages against a provider that is down until OUTAGE_SECONDS after the breaker first opens."""
    client = create_client(redis_url)
    stack.worker("w1")
    stack.worker("w2")
    stack.beat()
    wait_for(lambda: Breaker(client).status().state == "open", timeout=30, what="the breaker to open")
    time.sleep(OUTAGE_SECONDS)  # the outage itself: nothing to wait for
    restore()
    wait_for(lambda: sent_count(db) == 500, timeout=90, interval=0.5, what="every message after the recovery")
    status = Breaker(client).status()
    probes = int(client.hget(keys.METRICS_BREAKER, "probes") or 0)
    opened = int(client.hget(keys.METRICS_BREAKER, "opened") or 0)
    client.close()
    assert status.state == "closed" and status.why == "the probe delivery succeeded"
    failed_probes = probes - 1  # the last one succeeded and closed it
    # Opened once on failures, then reopened by every failed probe: 1 + 2 + 4 + 4 s covers the outage.
    assert opened == 1 + failed_probes and 2 <= failed_probes <= 4, (opened, probes)
    failed_attempts = attempts_spent(db) - 500
    assert failed_attempts <= MIN_CALLS + failed_probes
    logs = "".join(p.log() for p in stack.processes)
    assert logs.count("event=breaker_opened") == opened and logs.count("event=breaker_closed") == 1


def test_a_provider_answering_503_costs_at_most_min_calls_plus_the_probes(
    fault_env, make_stack, db, receiver, redis_url
):
    receiver.set_behaviour(status=503)
    insert_backlog(db, 500)
    stack = make_stack(**{**fault_env, **BREAKER_ENV})
    breaker_outage(db, stack, redis_url, restore=lambda: receiver.set_behaviour(status=202))
    failed = [d for d in receiver.deliveries() if d["status"] == 503]
    assert attempts_spent(db) - 500 == len(failed), "every attempt spent is a POST the provider saw"
    accepted = accepted_per_key(receiver)
    assert len(accepted) == 500 and set(accepted.values()) == {1}, "0 lost, 0 duplicates"


def test_a_provider_refusing_connections_costs_at_most_min_calls_plus_the_probes(
    fault_env, make_stack, db, redis_url
):
    port = free_port()
    insert_backlog(db, 500)
    stack = make_stack(**{**fault_env, **BREAKER_ENV, "WEBHOOK_URL": f"http://127.0.0.1:{port}/webhook"})
    providers: list[Receiver] = []  # none listening yet: connection refused

    def restore() -> None:
        providers.append(Receiver(port=port).start())

    try:
        breaker_outage(db, stack, redis_url, restore)
        accepted = accepted_per_key(providers[0])
        assert len(accepted) == 500 and set(accepted.values()) == {1}, "0 lost, 0 duplicates"
    finally:
        for provider in providers:
            provider.stop()


def test_a_429_with_retry_after_pauses_every_worker_and_spends_no_other_attempt(fault_env, make_stack, db, receiver):
    pause = 3
    threads = 2 * 4
    receiver.set_behaviour(status=429, retry_after=pause)
    insert_backlog(db, 300)
    stack = make_stack(**{**fault_env, "RETRY_MAX_SECONDS": 10})  # the pause is capped like any retry delay
    stack.worker("w1", "--concurrency", "4")
    stack.worker("w2", "--concurrency", "4")
    stack.beat()
    first = wait_for(lambda: receiver.deliveries(), timeout=30, interval=0.005, what="the first POST")[0]["received_at"]
    # The provider takes deliveries again before the pause ends: only the pause keeps the workers away.
    threading.Timer(first + pause - 0.5 - time.time(), lambda: receiver.set_behaviour(status=202, retry_after=None)).start()
    wait_for(lambda: sent_count(db) == 300, timeout=60, interval=0.5, what="every message after the pause")
    deliveries = receiver.deliveries()
    refused = [d for d in deliveries if d["status"] == 429]
    assert len(refused) <= threads, "only the POSTs already under way when the first 429 came back"
    assert min(d["received_at"] for d in deliveries if d["status"] == 202) >= first + pause
    assert attempts_spent(db) == 300 + len(refused), "no other message spent an attempt"
    accepted = accepted_per_key(receiver)
    assert len(accepted) == 300 and set(accepted.values()) == {1}
