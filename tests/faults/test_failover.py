"""Failovers for real on loopback: a PostgreSQL standby promoted and a Redis master replaced by
its Sentinels mid-drain. Every process follows within FOLLOW_SECONDS, nothing is lost, and only
messages in flight at the failover reach the receiver twice, with the same Idempotency-Key."""

from __future__ import annotations

import time

import psycopg
import pytest
import redis
import requests
from psycopg.rows import dict_row

from api.sending import STARTED
from harness.stack import free_port
from messaging.errors import DatabaseUnavailable
from messaging.postgres import migrations
from messaging.postgres import pool as postgres_pool
from messaging.redis import keys
from tests.faults.drain import assert_all_delivered, assert_audit_clean, insert_backlog, sent_count
from tests.faults.network import iptables_unusable, silenced
from tests.faults.replicas import (
    PostgresPair,
    RedisSentinels,
    missing_postgres_tools,
    missing_redis_server,
)
from tests.helpers import wait_for
from worker.factory import DEFAULT_CONCURRENCY

pytestmark = pytest.mark.e2e

FOLLOW_SECONDS = 15
# The Redis drain's pace is set by the receiver, not by how fast this machine is: two workers' threads, each
# POST held this long, deliver at most 2 * 32 / 0.256 s = 250 messages a second, so the backlog lasts at
# least 24 s and outlasts an ordered failover's demotion of the old master (about 12 s after it began).
REDIS_RECEIVER_DELAY_MS = 256
REDIS_BACKLOG = 6000
# The most send tasks a worker can hold without asking the broker again: its threads and their prefetch.
HELD_BY_A_WORKER = 3 * DEFAULT_CONCURRENCY


@pytest.fixture
def pg_pair():
    reason = missing_postgres_tools()
    if reason:
        pytest.skip(reason)
    pair = PostgresPair().start()
    with psycopg.connect(pair.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE messaging")
    migrations.migrate(pair.url("messaging"))
    pair.wait_replicated()
    yield pair
    print(pair.logs())
    pair.stop()


@pytest.fixture
def sentinels():
    reason = missing_redis_server()
    if reason:
        pytest.skip(reason)
    group = RedisSentinels().start()
    yield group
    print(group.logs())
    group.stop()


def connect(url: str) -> psycopg.Connection:
    """A connection to whichever server accepts writes now."""
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=5)


def failovers_counted(redis_client: redis.Redis, dependency: str) -> int:
    return int(redis_client.hget(keys.METRICS_FAILOVERS, dependency) or 0)


def deliveries_done(worker) -> int:
    """Send tasks a worker ran, by its own log: it consumes from the broker while this grows."""
    return worker.log().count("event=delivery ")


def assert_duplicates_were_in_flight(receiver, failed_at: float, webhook_timeout: float) -> int:
    """Every key the receiver got twice was first POSTed while the failover could catch it: a POST
    under way at `failed_at` began at most the webhook timeout before and ended at most that long after."""
    first: dict[str, float] = {}
    for delivery in receiver.deliveries():
        first.setdefault(delivery["key"], delivery["received_at"])
    repeated = [key for key, count in receiver.count_by_key().items() if count > 1]
    for key in repeated:
        assert failed_at - webhook_timeout - 1 <= first[key] <= failed_at + webhook_timeout, (key, first[key], failed_at)
    return len(repeated)


def test_a_postgresql_promotion_mid_drain_is_followed_within_15_s_and_loses_nothing(
    pg_pair, fault_env, make_stack, receiver, redis_url
):
    url = pg_pair.url("messaging")
    env = {**fault_env, "DATABASE_URL": url}
    receiver.set_behaviour(delay_ms=2)
    with connect(url) as db:
        insert_backlog(db, 4000)
        stack = make_stack(**env)
        stack.worker("w1")
        stack.beat()
        wait_for(lambda: sent_count(db) >= 800, timeout=60, what="the drain to be under way")
    failed_at, started = time.time(), time.monotonic()
    pg_pair.fail_over()
    with connect(url) as db:
        promoted = sent_count(db)
        wait_for(lambda: sent_count(db) > promoted, timeout=FOLLOW_SECONDS, interval=0.1,
                 what="the worker to record a delivery on the new primary")
        followed = time.monotonic() - started
        wait_for(lambda: sent_count(db) == 4000, timeout=120, interval=0.5, what="the drain to complete")
        assert_all_delivered(db, receiver, 4000, max_duplicates=DEFAULT_CONCURRENCY)
        assert db.execute("SELECT count(*) AS n FROM messages WHERE claim_token IS NOT NULL").fetchone()["n"] == 0
    repeated = assert_duplicates_were_in_flight(receiver, failed_at, float(env["WEBHOOK_TIMEOUT_SECONDS"]))
    print(f"postgresql failover: followed in {followed:.1f} s, 4000 delivered, {repeated} repeated")
    assert_audit_clean(env)
    assert failovers_counted(redis.Redis.from_url(redis_url), "postgresql") >= 1, "the worker counted the failover"


def test_a_pool_drops_a_connection_to_a_server_that_turned_read_only(pg_pair):
    """A primary that turns read-only without closing its sessions (as a demoted node behind a
    proxy, or a managed service that sets its disk read-only) must not be handed out again."""
    url = pg_pair.url("messaging")
    failovers = []
    pool = postgres_pool.create_pool(url, max_size=1, name="read-only", on_failover=lambda: failovers.append(1))
    try:
        postgres_pool.fetch_one(pool, "keep_service_key", name="probe", value="1")
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            admin.execute("SELECT pg_reload_conf()")
        pg_pair.promote_standby()  # the other server now takes writes
        started = time.monotonic()

        def write() -> bool:
            try:
                postgres_pool.fetch_one(pool, "keep_service_key", name="probe-2", value="1")
                return True
            except DatabaseUnavailable:
                return False

        wait_for(write, timeout=FOLLOW_SECONDS, interval=0.1, what="a write through the pool to reach the writable server")
        print(f"read-only server left in {time.monotonic() - started:.2f} s")
        assert failovers, "the change of server was reported"
    finally:
        pool.close()


@pytest.mark.parametrize("how", ["master killed", "failover ordered"])
def test_every_client_follows_a_new_redis_master_within_15_s_and_nothing_is_lost(
    sentinels, how, fault_env, make_stack, db, receiver
):
    """Killed: the clients see connections refused until the Sentinels promote the replica. Ordered
    (SENTINEL FAILOVER): the old master lives on as a replica and answers writes with READONLY,
    which must send each client to the new master, never retry there."""
    env = {**fault_env, "REDIS_URL": sentinels.url()}
    receiver.set_behaviour(delay_ms=REDIS_RECEIVER_DELAY_MS)
    insert_backlog(db, REDIS_BACKLOG)
    stack = make_stack(**env)
    port = free_port()
    stack.api(port)
    workers = [stack.worker("w1"), stack.worker("w2")]
    stack.beat()
    wait_for(lambda: sent_count(db) >= 600, timeout=60, what="the drain to be under way")
    failed_at, started = time.time(), time.monotonic()
    old = sentinels.master_port()
    if how == "master killed":
        sentinels.kill_master()
    else:
        sentinels.client(sentinels.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", "mymaster")
    new = sentinels.wait_new_master(old)
    promoted = time.monotonic() - started
    # Killed: the clients must move from the failover on. Ordered: the old master takes their writes until
    # the Sentinels demote it (within their 10 s INFO period; operations.md, "What a failover costs"), so
    # from then on, and the drain must still be under way to show that they do.
    follow_from = started
    if how == "failover ordered":
        wait_for(lambda: sentinels.client(old).info("replication")["role"] == "slave", timeout=FOLLOW_SECONDS,
                 what="the Sentinels to make the old master a replica")
        follow_from = time.monotonic()
        sent_at_demotion = sent_count(db)
        assert sent_at_demotion < REDIS_BACKLOG - 500, "the drain is still under way when the old master is demoted"
    demoted = follow_from - started
    before = [deliveries_done(worker) for worker in workers]
    resumed_at = sent_count(db)
    deadline = follow_from + FOLLOW_SECONDS

    def followed() -> bool:
        api = requests.get(f"http://127.0.0.1:{port}/messaging/status", timeout=2)
        return (api.status_code == 200 and sent_count(db) >= resumed_at + 250
                and all(deliveries_done(worker) > done + HELD_BY_A_WORKER for worker, done in zip(workers, before)))

    wait_for(followed, timeout=max(0.0, deadline - time.monotonic()), interval=0.2,
             what="the API, the beat and both workers to work through the new master")
    followed_in = time.monotonic() - follow_from
    wait_for(lambda: sent_count(db) == REDIS_BACKLOG, timeout=120, interval=0.5, what="the drain to complete")
    assert_all_delivered(db, receiver, REDIS_BACKLOG, max_duplicates=2 * DEFAULT_CONCURRENCY)
    repeated = assert_duplicates_were_in_flight(receiver, failed_at, float(env["WEBHOOK_TIMEOUT_SECONDS"]))
    assert all(p.alive() for p in stack.processes), stack.logs()
    master = sentinels.client(new)
    assert failovers_counted(master, "redis") >= 1, "the processes counted the failover"
    demotion = (f", the old master demoted after {demoted:.1f} s ({sent_at_demotion} sent)"
                if how == "failover ordered" else "")
    print(f"redis {how}: new master after {promoted:.1f} s{demotion}, every client followed in {followed_in:.1f} s "
          f"more, {REDIS_BACKLOG} delivered, {repeated} repeated")
    assert_audit_clean(env)


def sending_enabled(api: str) -> bool | None:
    """What the API says of the switch, or None while it cannot answer."""
    try:
        answer = requests.get(f"{api}/status", timeout=5)
    except requests.RequestException:
        return None
    return answer.json()["enabled"] if answer.status_code == 200 else None


def test_a_stop_acknowledged_before_a_redis_failover_stays_a_stop(sentinels, fault_env, make_stack):
    stack = make_stack(**{**fault_env, "REDIS_URL": sentinels.url(), "AUTO_START": "true"})
    port = free_port()
    stack.api(port)
    api = f"http://127.0.0.1:{port}/messaging"
    assert requests.post(f"{api}/stop", timeout=10).status_code == 200
    old = sentinels.kill_master()
    new = sentinels.wait_new_master(old)
    assert sentinels.client(new).get(keys.ENABLED) == "0", "the new master holds the stop"
    wait_for(lambda: sending_enabled(api) is False, timeout=FOLLOW_SECONDS, what="the API to report the stop")
    # The API's producer found the new master too: starting publishes a batch at once.
    started = requests.post(f"{api}/start", timeout=10)
    assert started.json()["message"] == STARTED, started.text


def test_a_stop_no_replica_took_is_not_acknowledged(sentinels, fault_env, make_stack):
    """Asynchronous replication can lose a stop in a failover: AUTO_START would then read the
    missing switch as on. With the replica's link silenced, the API must not answer 200."""
    reason = iptables_unusable()
    if reason:
        pytest.skip(reason)
    stack = make_stack(**{**fault_env, "REDIS_URL": sentinels.url(), "AUTO_START": "true"})
    port = free_port()
    stack.api(port)
    api = f"http://127.0.0.1:{port}/messaging"
    old = sentinels.master_port()
    with silenced(old, {sentinels.replication_link_port()}):
        answer = requests.post(f"{api}/stop", timeout=10)
        sentinels.kill_master()
        # Until the replica is promoted: the dead master's kernel would otherwise still deliver the stop.
        sentinels.wait_new_master(old)
    enabled = wait_for(lambda: sending_enabled(api) is not None and [sending_enabled(api)], timeout=FOLLOW_SECONDS,
                       what="the API to answer through the new master")[0]
    assert not (answer.status_code == 200 and enabled), "a stop answered 200 became a start in the failover"
    assert answer.status_code == 503 and "replica" in answer.text, answer.text
