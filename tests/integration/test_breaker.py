"""The circuit breaker against a real Redis: its transitions, each made once by one caller among
many at the same moment, the single probe, and closing it by hand."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from messaging.delivery.ports import Admission, Verdict
from messaging.redis import flow, keys
from messaging.redis.breaker import Breaker
from tests.integration.flow_support import (
    admit,
    admit_together,
    open_breaker,
    transitions,
)


def test_from_cold_no_more_go_than_could_all_fail_without_opening_the_breaker(make_flow):
    control = make_flow()
    answers = admit_together(control, 20)
    assert sum(a.go for a in answers) == 5
    assert {a.reason for a in answers if not a.go} == {"breaker_watching"}


def test_min_calls_failures_open_it_once_whoever_records_them(make_flow, caplog):
    control = make_flow()
    admitted = [admit(control) for _ in range(5)]
    with caplog.at_level(logging.INFO, logger="messaging.redis"), ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda a: control.record(a, Verdict.FAILING, why="HTTP 503 Service Unavailable"), admitted))
    status = Breaker(control.client).status()
    assert status.state == "open"
    assert status.why == "5 of 5 deliveries in the last 300s failed; last: HTTP 503 Service Unavailable"
    assert transitions(caplog, "breaker_opened") == 1


def test_failures_among_enough_successes_do_not_open_it(make_flow):
    control = make_flow()
    for _ in range(10):
        control.record(admit(control), Verdict.HEALTHY)
    for _ in range(23):  # 23 of 33 is below 0.7
        control.record(Admission(go=True), Verdict.FAILING, why="HTTP 503")
    assert Breaker(control.client).status().state == "closed"
    control.record(Admission(go=True), Verdict.FAILING, why="HTTP 503")  # 24 of 34 is not
    assert Breaker(control.client).status().state == "open"


def test_permanent_failures_count_for_nothing(make_flow):
    control = make_flow()
    for _ in range(20):
        control.record(admit(control), Verdict.NEITHER)
    assert Breaker(control.client).status().state == "closed"
    assert sum(admit(control).go for _ in range(5)) == 5, "their admissions were given back"


def test_while_open_nothing_goes_and_a_batch_claims_nothing(make_flow):
    control = make_flow(breaker_open_seconds=30)
    open_breaker(control)
    held = admit(control)
    assert (held.go, held.reason) == (False, "breaker_open")
    assert 29 <= held.wait_seconds <= 30
    assert control.claimable(100, 1.0) == 0


def test_after_the_open_time_exactly_one_probe_goes_among_many_callers(make_flow, caplog):
    control = make_flow()
    open_breaker(control)
    time.sleep(0.35)
    assert control.claimable(100, 1.0) == 1, "the batch claims one message for the probe"
    with caplog.at_level(logging.INFO, logger="messaging.redis"):
        answers = admit_together(control, 20)
    assert sum(a.go for a in answers) == 1
    assert {a.reason for a in answers if not a.go} == {"breaker_half_open"}
    assert Breaker(control.client).status().state == "half_open" and transitions(caplog, "breaker_half_open") == 1
    assert control.claimable(100, 1.0) == 0, "nothing more while the probe is under way"


def test_a_successful_probe_closes_it(make_flow, caplog):
    control = make_flow()
    open_breaker(control)
    time.sleep(0.35)
    probe = admit(control)
    with caplog.at_level(logging.INFO, logger="messaging.redis"):
        control.record(probe, Verdict.HEALTHY)
    assert Breaker(control.client).status().state == "closed"
    assert transitions(caplog, "breaker_closed") == 1


def test_a_failed_probe_reopens_it_for_twice_as_long_up_to_retry_max(make_flow):
    control = make_flow(breaker_open_seconds=0.2, retry_max_seconds=0.5)
    open_breaker(control)
    waits = []
    for _ in range(3):
        time.sleep(float(control.client.hget(keys.FLOW_BREAKER, "open_seconds")) + 0.05)
        control.record(admit(control), Verdict.FAILING, why="HTTP 503")
        waits.append(float(control.client.hget(keys.FLOW_BREAKER, "open_seconds")))
        assert Breaker(control.client).status().why == "the probe delivery failed: HTTP 503"
    assert waits == [0.4, 0.5, 0.5]


def test_a_probe_whose_worker_died_lets_another_probe_go_after_its_lease(make_flow, monkeypatch):
    monkeypatch.setattr(flow, "LEASE_MARGIN_SECONDS", 0.0)
    control = make_flow(webhook_timeout_seconds=0.2)
    open_breaker(control)
    time.sleep(0.35)
    assert admit(control).go  # ... and never answers
    assert not admit(control).go
    time.sleep(0.25)
    assert admit(control).go


def test_start_closes_an_open_breaker_by_hand(make_flow, caplog):
    control = make_flow(breaker_open_seconds=30)
    assert not Breaker(control.client).close_by_hand()
    open_breaker(control)
    with caplog.at_level(logging.INFO, logger="messaging.redis"):
        assert Breaker(control.client).close_by_hand()
    status = Breaker(control.client).status()
    assert (status.state, status.why) == ("closed", "closed by hand (POST /messaging/start)")
    assert transitions(caplog, "breaker_closed") == 1
    assert admit(control).go


# The provider's pause ----------------------------------------------------------------------------
