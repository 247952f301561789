"""The delivery guarantees (each message once, none lost, a stable Idempotency-Key) with real processes while they are killed,
doubled, toggled, and their services restarted. The receiver counts by Idempotency-Key."""

from __future__ import annotations

import random
import signal
import time

import pytest
import requests

from harness.stack import free_port
from tests.conftest import POSTGRES_PORT
from tests.faults.drain import (
    assert_all_delivered,
    assert_audit_clean,
    insert_backlog,
    sent_count,
)
from tests.faults.services import PrivateRedis, TcpProxy, terminate_backends
from tests.helpers import wait_for
from worker.factory import DEFAULT_CONCURRENCY

pytestmark = pytest.mark.e2e

# The most POSTs one worker can have in flight: its threads.
CONCURRENCY = DEFAULT_CONCURRENCY


def test_a_worker_killed_mid_drain_loses_nothing_and_repeats_only_what_was_in_flight(fault_env, make_stack, db, receiver):
    receiver.set_behaviour(delay_ms=5)
    insert_backlog(db, 3000)
    stack = make_stack(**fault_env)
    doomed = stack.worker("doomed")
    stack.beat()
    wait_for(lambda: sent_count(db) >= 600, timeout=60, what="the drain to be under way")
    doomed.popen.send_signal(signal.SIGKILL)
    doomed.wait(10)
    stack.worker("fresh")
    wait_for(lambda: sent_count(db) == 3000, timeout=120, interval=0.5, what="the drain to complete after the crash")
    assert_all_delivered(db, receiver, 3000, max_duplicates=CONCURRENCY)
    assert_audit_clean(fault_env)


def test_two_beats_and_three_workers_send_each_message_once(fault_env, make_stack, db, receiver):
    insert_backlog(db, 2000)
    stack = make_stack(**fault_env)
    for name in ("w1", "w2", "w3"):
        stack.worker(name)
    beats = [stack.beat("beat1"), stack.beat("beat2")]
    wait_for(lambda: sent_count(db) == 2000, timeout=120, interval=0.5, what="the drain")
    assert_all_delivered(db, receiver, 2000)
    assert_audit_clean(fault_env)
    for beat in beats:  # both fired batches all along: the guarantee held with two, not with one that never ran
        assert beat.alive() and beat.log().count("Sending due task send-due-messages") >= 3, beat.log()


def test_stop_and_start_toggled_during_a_drain_lose_and_repeat_nothing(fault_env, make_stack, db, receiver):
    receiver.set_behaviour(delay_ms=2)
    insert_backlog(db, 2000)
    stack = make_stack(**fault_env)
    port = free_port()
    stack.api(port)
    stack.worker("w1")
    stack.worker("w2")
    stack.beat()
    api = f"http://127.0.0.1:{port}/messaging"
    toggles = random.Random(5)
    for _ in range(40):
        requests.post(f"{api}/{toggles.choice(['stop', 'start'])}", timeout=5).raise_for_status()
        time.sleep(toggles.uniform(0.01, 0.15))
    requests.post(f"{api}/start", timeout=5).raise_for_status()
    wait_for(lambda: sent_count(db) == 2000, timeout=120, interval=0.5, what="the drain")
    assert_all_delivered(db, receiver, 2000)
    assert_audit_clean(fault_env)


def test_a_redis_restart_during_a_drain_is_survived(fault_env, make_stack, db, receiver, tmp_path):
    private = PrivateRedis(free_port(), tmp_path).start()
    insert_backlog(db, 2000)
    receiver.set_behaviour(delay_ms=2)
    stack = make_stack(**{**fault_env, "REDIS_URL": private.url})
    stack.worker("w1")
    stack.beat()
    try:
        wait_for(lambda: sent_count(db) >= 300, timeout=60, what="the drain to be under way")
        private.kill()
        time.sleep(3)
        private.start()
        wait_for(lambda: sent_count(db) == 2000, timeout=120, interval=0.5, what="the drain to complete")
        # No worker dies here, so the design promises no duplicate: a send under way when Redis
        # went is recorded in PostgreSQL at once (Redis calls fail fast), long before its claim
        # could expire, and a task delivered again finds its claim started and sends nothing.
        assert_all_delivered(db, receiver, 2000)
        assert all(p.alive() for p in stack.processes), stack.logs()
        assert "Unrecoverable error" not in stack.processes[0].log()
        assert_audit_clean({**fault_env, "REDIS_URL": private.url})
    finally:
        stack.stop(timeout=15)
        private.kill()


def test_postgresql_connections_terminated_during_a_drain_are_survived(fault_env, make_stack, db, receiver, database_url):
    insert_backlog(db, 2000)
    receiver.set_behaviour(delay_ms=2)
    stack = make_stack(**fault_env)
    stack.worker("w1")
    stack.beat()
    wait_for(lambda: sent_count(db) >= 200, timeout=60, what="the drain to be under way")
    terminated = 0
    for _ in range(5):
        terminated += terminate_backends(database_url)
        time.sleep(0.5)
    assert terminated > 0
    wait_for(lambda: sent_count(db) == 2000, timeout=120, interval=0.5, what="the drain to complete")
    assert_all_delivered(db, receiver, 2000)
    assert all(p.alive() for p in stack.processes), stack.logs()
    assert_audit_clean(fault_env)


def test_postgresql_down_for_a_while_is_survived_and_logged_without_a_flood(fault_env, make_stack, db, receiver):
    proxy = TcpProxy(target_port=POSTGRES_PORT).start()
    via_proxy = fault_env["DATABASE_URL"].replace(f"127.0.0.1:{POSTGRES_PORT}", f"127.0.0.1:{proxy.port}")
    assert via_proxy != fault_env["DATABASE_URL"], "the service connects through the proxy"
    insert_backlog(db, 1500)
    receiver.set_behaviour(delay_ms=2)
    stack = make_stack(**{**fault_env, "DATABASE_URL": via_proxy})
    worker = stack.worker("w1")
    beat = stack.beat()
    try:
        wait_for(lambda: sent_count(db) >= 200, timeout=60, what="the drain to be under way")
        proxy.cut()
        time.sleep(8)
        assert worker.alive() and beat.alive(), stack.logs()
        proxy.restore()
        wait_for(lambda: sent_count(db) == 1500, timeout=120, interval=0.5, what="the drain to resume and complete")
        assert_all_delivered(db, receiver, 1500)
        assert_audit_clean(fault_env)
        outage_lines = [line for line in worker.log().splitlines() if "dependency=postgresql" in line]
        assert 0 < len(outage_lines) <= 6, "the cause is logged once per 30 s per kind, not per task"
    finally:
        proxy.cut()


def test_sigterm_lets_a_worker_finish_the_posts_a_slow_webhook_holds(fault_env, make_stack, db, receiver):
    receiver.set_behaviour(delay_ms=1500)
    insert_backlog(db, 100)
    stack = make_stack(**{**fault_env, "SEND_BATCH_SIZE": 100, "WEBHOOK_TIMEOUT_SECONDS": 3})
    worker = stack.worker("slow")
    stack.beat()
    wait_for(lambda: receiver.stats()["received"] >= 10, timeout=30, what="POSTs in flight")
    stopped_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(3 + 5) == 0, worker.log()
    assert time.monotonic() - stopped_at < 3 + 5
    received = {d["key"] for d in receiver.deliveries()}
    sent = {str(r["id"]) for r in db.execute("SELECT id FROM messages WHERE sending_status = 1")}
    assert received == sent, "every POST the webhook got was recorded before the worker exited"
    receiver.set_behaviour(delay_ms=0)
    stack.worker("next")
    wait_for(lambda: sent_count(db) == 100, timeout=60, what="the rest to be sent by the next worker")
    assert_all_delivered(db, receiver, 100)
    assert_audit_clean(fault_env)


def test_a_flaky_webhook_gets_every_message_through_with_the_same_key(fault_env, make_stack, db, receiver):
    receiver.set_behaviour(fail_first=2, fail_status=503)
    insert_backlog(db, 50)
    # The first deliveries all fail: the circuit breaker would rightly open. Retries are the point here.
    stack = make_stack(**fault_env, BREAKER_MIN_CALLS=1000)
    stack.worker("w1")
    stack.beat()
    wait_for(lambda: sent_count(db) == 50, timeout=60, what="every message to get through")
    stats = receiver.stats()
    assert (stats["unique"], stats["received"], stats["accepted"]) == (50, 150, 50)
    assert {r["attempts"] for r in db.execute("SELECT attempts FROM messages")} == {3}
    assert_audit_clean(fault_env)
