"""A connection that goes silent (packets dropped, no reset: a failover, a lost NAT entry,
a partition) is noticed within about 15 s; the drain resumes by itself, loses and repeats nothing,
and SIGTERM still ends every process within the webhook timeout plus 5 s.

Real processes. As root, iptables silences exactly the service's own loopback connections (new
ones still work), and a worker in a network namespace loses its link. Each test skips, saying
why, where that cannot be done."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from harness.stack import BIN, Stack, free_port
from tests.conftest import POSTGRES_PORT, REDIS_PORT
from tests.faults.drain import assert_all_delivered, insert_backlog, sent_count
from tests.faults.network import (
    Namespace,
    client_ports,
    iptables_unusable,
    netns_unusable,
    process_tree,
    silenced,
)
from tests.faults.services import TcpProxy
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

BACKLOG = 1500
# The guarantee: a silent connection is noticed within about 15 s (messaging/timeouts.py).
DETECTION_SECONDS = 15
# Threads per worker: few, so that every pooled connection is in use when they go silent
# (with spare room in the pool, fresh connections would hide stuck ones), and the partitioned
# worker can have at most this many POSTs open when its link goes down.
CONCURRENCY = 4
# Claimed per batch (5 batches a second): within what such a worker sends before a claim expires,
# so that the only stall measured is the fault's.
BATCH_SIZE = 20
# Sent by the partitioned worker alone once its link is back.
AFTER_PARTITION = 100


@pytest.fixture
def env(fault_env) -> dict:
    return {**fault_env, "SEND_BATCH_SIZE": BATCH_SIZE}


@pytest.fixture
def iptables() -> None:
    reason = iptables_unusable()
    if reason:
        pytest.skip(f"iptables is not usable here ({reason})")


@pytest.fixture
def namespace():
    reason = netns_unusable()
    if reason:
        pytest.skip(f"network namespaces are not usable here ({reason})")
    made = Namespace(subnet=random.randrange(256))
    try:
        yield made.create()
    finally:
        made.delete()


def service_pids(stack: Stack) -> set[int]:
    return set().union(*(process_tree(p.popen.pid) for p in stack.processes if p.alive()))


def longest_pause(receiver, since: float, until: float | None = None) -> float:
    """The longest time without a delivery at the receiver, from `since` to the last one (or `until`)."""
    arrivals = sorted(d["received_at"] for d in receiver.deliveries() if d["received_at"] >= since)
    marks = [since, *arrivals, *([until] if until else [])]
    return max(later - earlier for earlier, later in zip(marks, marks[1:]))


def wait_for_drain(db, receiver, since: float, count: int = BACKLOG, timeout: float = 120) -> None:
    """Wait for every message to be sent; on failure, say how far it got and how long it stalled."""
    try:
        wait_for(lambda: sent_count(db) == count, timeout=timeout, interval=0.5, what="the drain to complete")
    except AssertionError as error:
        stalled = longest_pause(receiver, since, until=time.time())
        raise AssertionError(f"{error}: {sent_count(db)} of {count} sent, no delivery for {stalled:.0f} s") from None


def assert_resumed_in_time(receiver, since: float) -> None:
    pause = longest_pause(receiver, since)
    print(f"longest pause in deliveries after the fault: {pause:.1f} s")
    assert pause < DETECTION_SECONDS, f"the drain stalled {pause:.1f} s after the connections went silent"


def assert_stops_in_time(stack: Stack, webhook_timeout: float) -> None:
    """SIGTERM ends every process within the webhook timeout plus 5 s ."""
    bound = webhook_timeout + 5
    signalled_at = time.monotonic()
    for process in stack.processes:
        process.signal(signal.SIGTERM)
    for process in stack.processes:
        try:
            process.wait(max(signalled_at + bound - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{process.name} still runs {bound:g} s after SIGTERM")
    print(f"every process ended {time.monotonic() - signalled_at:.1f} s after SIGTERM")


def post_within(url: str, seconds: float) -> requests.Response:
    """A POST that must be answered 200 within `seconds`."""
    started = time.monotonic()
    try:
        answer = requests.post(url, timeout=seconds)
    except requests.RequestException as error:
        pytest.fail(f"POST {url}: no answer after {time.monotonic() - started:.1f} s ({type(error).__name__})")
    assert answer.status_code == 200, (answer.status_code, answer.text)
    return answer


def start_service(make_stack, env: dict) -> tuple[Stack, str]:
    """The API, a worker and beat; the API's /messaging URL."""
    stack = make_stack(**env)
    api_port = free_port()
    stack.api(api_port)
    stack.worker("w1", f"--concurrency={CONCURRENCY}")
    stack.beat()
    return stack, f"http://127.0.0.1:{api_port}/messaging"


@contextmanager
def silenced_mid_drain(db, receiver, stack: Stack, server_port: int) -> Iterator[None]:
    """Silence the service's connections to `server_port`; the drain resumes in time and completes."""
    wait_for(lambda: sent_count(db) >= 200, timeout=60, what="the drain to be under way")
    ports = client_ports(server_port, service_pids(stack))
    assert ports, f"the service holds connections to port {server_port}"
    with silenced(server_port, ports):
        since = time.time()
        assert sent_count(db) < BACKLOG, "silenced mid-drain"
        wait_for_drain(db, receiver, since)
        assert_resumed_in_time(receiver, since)
        assert_all_delivered(db, receiver, BACKLOG)
        yield


def test_silenced_postgresql_connections_are_replaced_and_the_drain_resumes(
    iptables, env, make_stack, db, receiver
):
    receiver.set_behaviour(delay_ms=5)
    insert_backlog(db, BACKLOG)
    stack, api = start_service(make_stack, env)
    requests.get(f"{api}/status", timeout=5).raise_for_status()
    with silenced_mid_drain(db, receiver, stack, POSTGRES_PORT):
        # The API's pooled connection went silent too; it is replaced, not lent out again.
        wait_for(
            lambda: requests.get(f"{api}/status", timeout=DETECTION_SECONDS).status_code == 200,
            timeout=DETECTION_SECONDS,
            what="the API to answer from PostgreSQL again",
        )
        assert_stops_in_time(stack, env["WEBHOOK_TIMEOUT_SECONDS"])


def test_silenced_redis_connections_are_replaced_and_the_drain_resumes(
    iptables, env, make_stack, db, receiver
):
    receiver.set_behaviour(delay_ms=5)
    insert_backlog(db, BACKLOG)
    stack, api = start_service(make_stack, {**env, "AUTO_START": "false"})
    # Started through the API, so that its broker producer holds a connection too.
    post_within(f"{api}/start", 5)
    with silenced_mid_drain(db, receiver, stack, REDIS_PORT):
        # The API's switch and producer: each call is answered, and the batch is enqueued.
        post_within(f"{api}/stop", DETECTION_SECONDS)
        started = post_within(f"{api}/start", DETECTION_SECONDS).json()
        assert "a batch runs now" in started["message"], started
        assert_stops_in_time(stack, env["WEBHOOK_TIMEOUT_SECONDS"])


def test_a_partitioned_worker_leaves_the_drain_to_the_others(
    namespace, env, make_stack, db, receiver, database_url, redis_url
):
    """A worker on a host of its own (a network namespace) loses its link mid-drain."""
    relays = [TcpProxy(port, host=namespace.host_address).start() for port in (POSTGRES_PORT, REDIS_PORT, receiver.port)]
    postgres, redis_relay, webhook = relays

    def through(url: str, port: int, relay: TcpProxy) -> str:
        return url.replace(f"127.0.0.1:{port}", f"{relay.host}:{relay.port}")

    receiver.set_behaviour(delay_ms=5)
    insert_backlog(db, BACKLOG)
    stack = make_stack(**env)
    partitioned = stack.start(
        "partitioned",
        *namespace.command(str(BIN / "celery"), "-A", "worker", "worker", "--loglevel=INFO",
                           "--hostname=partitioned@%h", "--without-mingle", "--without-gossip",
                           f"--concurrency={CONCURRENCY}"),
        extra_env={
            "DATABASE_URL": through(database_url, POSTGRES_PORT, postgres),
            "REDIS_URL": through(redis_url, REDIS_PORT, redis_relay),
            "WEBHOOK_URL": through(receiver.url, receiver.port, webhook),
        },
    )
    try:
        stack.beat()
        wait_for(lambda: "outcome=sent" in partitioned.log(), timeout=60, what="the partitioned worker to send")
        host_worker = stack.worker("w1", f"--concurrency={CONCURRENCY}")
        wait_for(lambda: sent_count(db) >= 400, timeout=60, what="both workers to drain")
        cutting_at = time.time()
        namespace.link_down()
        cut_at = time.time()
        # Watched from the cut on, while the other worker drains: when the cut-off worker's last
        # silent connection to PostgreSQL or Redis ends.
        silent_gone_at: list[float] = []
        watcher = threading.Thread(
            target=lambda: silent_gone_at.append(
                wait_for(
                    lambda: namespace.connections_to({postgres.port, redis_relay.port}) == 0 and time.time(),
                    timeout=DETECTION_SECONDS * 2,
                    interval=0.2,
                    what="the partitioned worker to give up its silent connections",
                )
            ),
            daemon=True,
        )
        watcher.start()
        assert sent_count(db) < BACKLOG, "partitioned mid-drain"
        wait_for_drain(db, receiver, cut_at)
        assert_resumed_in_time(receiver, cut_at)
        # Only a POST open at the cut can be repeated (its answer or its record was cut off),
        # and with the same Idempotency-Key: the provider sees one message. (Bytes already past
        # the link reach the receiver through the relay a moment after the cut.)
        first_seen: dict[str, float] = {}
        for delivery in sorted(receiver.deliveries(), key=lambda d: d["received_at"]):
            first_seen.setdefault(delivery["key"], delivery["received_at"])
        repeated = {key for key, n in receiver.count_by_key().items() if n > 1}
        open_from = cutting_at - float(env["WEBHOOK_TIMEOUT_SECONDS"]) - 1
        late = {key: round(first_seen[key] - cut_at, 2) for key in repeated if not open_from <= first_seen[key] <= cut_at + 0.5}
        assert not late, f"repeated POSTs first seen this long after (+) or before (-) the cut: {late}"
        assert_all_delivered(db, receiver, BACKLOG, max_duplicates=CONCURRENCY)

        # The cut-off worker notices by itself: its silent connections end, instead of holding
        # threads for the kernel's 15 minutes of retransmissions.
        watcher.join(DETECTION_SECONDS * 2)
        assert silent_gone_at, "the partitioned worker kept a silent PostgreSQL or Redis connection"
        assert silent_gone_at[0] - cut_at <= DETECTION_SECONDS, f"its silent connections ended {silent_gone_at[0] - cut_at:.1f} s after the cut"
        # Back on the network, alone, it resumes by itself.
        host_worker.signal(signal.SIGTERM)
        host_worker.wait(15)
        namespace.link_up()
        back_at = time.time()
        insert_backlog(db, AFTER_PARTITION)
        wait_for_drain(db, receiver, back_at, count=BACKLOG + AFTER_PARTITION, timeout=60)
        resumed_in = time.time() - back_at
        print(f"the partitioned worker resumed and sent {AFTER_PARTITION} more in {resumed_in:.1f} s")
        assert resumed_in < DETECTION_SECONDS
        assert_all_delivered(db, receiver, BACKLOG + AFTER_PARTITION, max_duplicates=CONCURRENCY)
        assert_stops_in_time(stack, env["WEBHOOK_TIMEOUT_SECONDS"])
    finally:
        stack.stop(timeout=15)
        for relay in relays:
            relay.cut()
