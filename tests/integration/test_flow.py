"""messaging.redis.flow against a real Redis: the GCRA limit, the provider's pause, and what a send
costs in round trips. The breaker's transitions are in test_breaker.py."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import replace

import pytest
import redis

from messaging.delivery.ports import Admission, Verdict
from messaging.errors import CacheUnavailable
from messaging.redis import flow, keys
from messaging.redis.breaker import Breaker
from messaging.redis.counters import Counters
from messaging.redis.delivery_cache import DeliveryCache
from messaging.redis.flow import RedisFlowControl
from messaging.redis.shared_state import RedisSharedState
from messaging.redis.switch import Switch
from tests.helpers import wait_for
from tests.integration.flow_support import (
    CountingClient,
    admit,
    make_healthy,
    transitions,
)

# The rate limit ---------------------------------------------------------------------------------


def test_up_to_the_burst_go_at_once_then_one_per_interval(make_flow):
    control = make_flow(rate_limit_per_second=20, rate_limit_burst=3)
    answers = [admit(control) for _ in range(5)]
    assert [a.go for a in answers] == [True, True, True, False, False]
    assert answers[3].reason == "rate_limit"
    # The 4th conforms one interval (50 ms) after the first; nothing was reserved for it.
    assert 0.03 <= answers[3].wait_seconds <= 0.05 and answers[4].wait_seconds == pytest.approx(answers[3].wait_seconds, abs=0.005)


def test_many_callers_together_never_get_more_than_the_rate_plus_the_burst(make_flow):
    control = make_flow(rate_limit_per_second=50, rate_limit_burst=5)
    granted: list[float] = []
    stop = time.monotonic() + 1.0

    def keep_asking() -> None:
        while time.monotonic() < stop:
            if admit(control).go:
                granted.append(time.monotonic())

    threads = [threading.Thread(target=keep_asking) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) <= 50 * 1.0 + 5


def test_a_slot_within_the_hold_is_waited_for_in_the_task(make_flow):
    control = make_flow(rate_limit_per_second=5, rate_limit_burst=1, hold_in_task_seconds=1.0)
    assert admit(control).go
    started = time.monotonic()
    second = admit(control)
    assert second.go, "the next slot, 200 ms away, is within the hold"
    control.wait_for_slot(second)
    assert 0.15 <= time.monotonic() - started <= 0.5


def test_a_wait_that_overran_its_slot_takes_a_new_one(make_flow, monkeypatch, cache):
    control = make_flow(rate_limit_per_second=5, rate_limit_burst=1, hold_in_task_seconds=1.0)
    assert admit(control).go
    sleep = time.sleep
    stalls = iter([0.3])  # the first wait overruns its slot by 300 ms, as in a stalled process
    monkeypatch.setattr(flow.time, "sleep", lambda seconds: sleep(seconds + next(stalls, 0)))
    started = time.monotonic()
    control.wait_for_slot(admit(control))
    assert 0.45 <= time.monotonic() - started <= 0.7, "its slot at 200 ms given up; a new one, free at once at 500 ms"
    tat = float(cache.get(keys.FLOW_TAT)) - time.time()
    assert 0.1 <= tat <= 0.2, "the new slot is spent: the next one is 200 ms after it"


def test_a_batch_claims_what_the_rate_lets_through_before_the_next_batch(make_flow):
    control = make_flow(rate_limit_per_second=10, rate_limit_burst=2)
    assert control.claimable(5, 1.0) == 5
    assert control.claimable(100, 1.0) == 7, "10 in the next second, plus the burst, less what was claimed"
    assert control.claimable(100, 1.0) == 0, "two beats at once claim the slots once"
    time.sleep(0.25)
    assert 2 <= control.claimable(100, 1.0) <= 3


def test_a_batch_counts_the_time_its_sends_may_wait_for_their_slots(make_flow):
    assert make_flow(rate_limit_per_second=10, hold_in_task_seconds=1.0).claimable(100, 0.5) == 16


# The breaker -------------------------------------------------------------------------------------


def test_a_pause_holds_every_send_until_it_ends_and_a_shorter_one_does_not_shorten_it(make_flow, caplog):
    control = make_flow()
    with caplog.at_level(logging.INFO, logger="messaging.redis"):
        control.pause(0.5, why="HTTP 429 Too Many Requests")
        control.pause(0.6, why="HTTP 429 Too Many Requests")  # the POSTs under way meanwhile
        control.pause(0.1, why="HTTP 429 Too Many Requests")
    assert transitions(caplog, "provider_pause") == 1, "said once, when it began"
    assert not control.client.exists(keys.FLOW_CLEAR), "sends read that they must ask"
    held = admit(control)
    assert (held.go, held.reason) == (False, "paused")
    assert 0.4 <= held.wait_seconds <= 0.6
    assert control.claimable(100, 1.0) == 0
    assert Breaker(control.client).status().pause_why == "HTTP 429 Too Many Requests"
    wait_for(lambda: admit(control).go, timeout=2, what="the pause to end")


# What it costs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "per_send"), [(0, 1), (1_000_000, 2)])
def test_healthy_a_send_costs_no_round_trip_of_its_own_and_one_with_a_limit(make_flow, redis_url, settings, monkeypatch, rate, per_send):
    monkeypatch.setattr(flow, "SUCCESS_FLUSH_SECONDS", 3600)  # its one round trip a second, left out here
    make_healthy(make_flow())
    counting = CountingClient.from_url(redis_url, decode_responses=True)
    shared = RedisSharedState(Switch(counting, True), DeliveryCache(counting, 60), Counters(counting))
    cheap = RedisFlowControl(counting, replace(settings, breaker_min_calls=5, rate_limit_per_second=rate))
    CountingClient.round_trips = 0
    for _ in range(50):
        preflight = shared.preflight(uuid.uuid4())
        admission = cheap.admit(uuid.uuid4(), clear=preflight.flow_clear)
        assert admission.go
        cheap.record(admission, Verdict.HEALTHY)
    assert preflight.flow_clear
    assert CountingClient.round_trips == 50 * per_send, "the preflight MGET each, and the limit's script"


def test_a_failure_makes_sends_ask_again(make_flow, cache):
    control = make_flow()
    admission = make_healthy(control)
    assert cache.exists(keys.FLOW_CLEAR)
    control.record(admission, Verdict.FAILING, why="HTTP 503")
    assert not cache.exists(keys.FLOW_CLEAR)


def test_successes_counted_in_the_process_reach_the_window_once_a_second(make_flow, cache, monkeypatch):
    control = make_flow()
    free = make_healthy(control)

    def successes() -> int:
        return sum(int(v) for k, v in cache.hgetall(keys.FLOW_CALLS).items() if k.endswith(":s"))

    counted = successes()
    assert counted == 3, "with 5 calls to open at 0.7, 3 successes show it healthy"
    for _ in range(7):
        control.record(free, Verdict.HEALTHY)
    assert successes() == counted
    monkeypatch.setattr(flow, "SUCCESS_FLUSH_SECONDS", 0.0)
    control.record(free, Verdict.HEALTHY)
    assert successes() == counted + 8


def test_without_redis_admission_fails_as_cache_unavailable_and_recording_does_not(settings):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    control = RedisFlowControl(dead, settings)
    with pytest.raises(CacheUnavailable):
        control.admit(uuid.uuid4(), clear=False)
    control.record(Admission(go=True), Verdict.FAILING, why="x")
    control.pause(1, why="x")


def test_at_a_high_limit_the_time_a_send_takes_to_reach_its_post_is_not_lateness(make_flow, redis_url, settings):
    counting = CountingClient.from_url(redis_url, decode_responses=True)
    control = RedisFlowControl(counting, replace(settings, rate_limit_per_second=1_000_000))
    admission = control.admit(uuid.uuid4(), clear=True)
    time.sleep(0.005)  # the database's update between admission and POST
    CountingClient.round_trips = 0
    waiting = threading.Thread(target=control.wait_for_slot, args=(admission,), daemon=True)
    waiting.start()
    waiting.join(timeout=2)
    assert not waiting.is_alive(), "the wait for a slot one microsecond apart ends"
    assert CountingClient.round_trips == 0, "5 ms late is not a stall: the slot stands"
