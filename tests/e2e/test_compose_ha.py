"""deploy/ha.yml for real: the PostgreSQL standby streams from the primary, the three Sentinels agree
on the Redis master, and each pair fails over as docs/operations.md ("Failover in compose") says;
then the whole stack (api behind nginx, two workers, beat, migrate, a receiver) takes messages through
nginx while Redis and then PostgreSQL fail over, and a ledger is drawn at the end.

Needs a Docker engine and docker compose (or docker-compose); skips without them. Ports are published
on 127.0.0.1 only.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
import requests

from harness.stack import ROOT, environment
from tests.e2e.test_compose import (
    AUTHORIZED,
    Project,
    compose_command,
    docker_answers,
    image,
    new_project,
    tear_down,
)
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.compose, pytest.mark.timeout(900)]
SENTINELS = ("redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3")
DATA_SERVICES = ("postgres", "postgres-standby", "redis", "redis-replica", *SENTINELS)
HA_FILES = ("-f", "docker-compose.yml", "-f", "deploy/ha.yml")
# Sentinel's down-after-milliseconds (5 s, deploy/ha/redis-sentinel.sh) plus an election: well inside 15 s.
REDIS_FAILOVER_SECONDS = 15
# SPEC section 11: every process follows a new primary or master within 15 s.
FOLLOW_SECONDS = 15
WEBHOOK_TIMEOUT_SECONDS = 2
__all__ = ["image"]  # the built image, a fixture of tests/e2e/test_compose.py


@pytest.fixture
def ha() -> Iterator[Project]:
    if compose_command() is None or not docker_answers():
        pytest.skip("no Docker engine answers (docker info failed), or no docker compose / docker-compose")
    name = f"msgha{uuid.uuid4().hex[:8]}"
    env = environment(
        COMPOSE_PROJECT_NAME=name,
        FLOWER_BASIC_AUTH="ha:test",
        REDIS_PASSWORD=uuid.uuid4().hex,
        API_TOKEN="ha-test-token-" + "0123456789abcdef" * 2,
    )
    project = Project([*compose_command(), *HA_FILES], env, name)
    try:
        yield project
    finally:
        tear_down(project)


def sql(project: Project, service: str, query: str) -> str:
    return project.run("exec", "-T", service, "psql", "-U", "postgres", "-d", "messaging", "-Atc", query).strip()


def sentinel(project: Project, name: str, *command: str) -> list[str]:
    return project.run("exec", "-T", name, "redis-cli", "-p", "26379", "sentinel", *command).split()


def masters(project: Project) -> set[str]:
    return {sentinel(project, name, "get-master-addr-by-name", "mymaster")[0] for name in SENTINELS}


def sees_the_whole_topology(project: Project, name: str) -> bool:
    fields = sentinel(project, name, "master", "mymaster")
    found = dict(zip(fields[::2], fields[1::2]))
    return found["name"] == "mymaster" and found["num-slaves"] == "1" and found["num-other-sentinels"] == "2"


def test_the_standby_streams_the_sentinels_agree_and_each_pair_fails_over(ha):
    started = time.monotonic()
    ha.run("up", "-d", *DATA_SERVICES)

    def all_healthy() -> bool:
        containers = ha.containers()
        return all(any(c.service == s and c.health == "healthy" for c in containers) for s in DATA_SERVICES)

    wait_for(all_healthy, timeout=180, interval=1, what=f"healthy: {DATA_SERVICES}")
    came_up = time.monotonic() - started

    # The standby is in recovery, the primary sees it streaming, and a write reaches it.
    assert sql(ha, "postgres-standby", "SELECT pg_is_in_recovery()") == "t"
    assert sql(ha, "postgres", "SELECT state FROM pg_stat_replication") == "streaming"
    sql(ha, "postgres", "CREATE TABLE ha_probe (n int); INSERT INTO ha_probe VALUES (1)")
    wait_for(lambda: sql(ha, "postgres-standby", "SELECT to_regclass('ha_probe') IS NOT NULL") == "t", timeout=10,
             interval=0.2, what="the primary's write on the standby")  # fmt: skip

    # Every Sentinel names `redis`, and has found the replica and the two other Sentinels.
    assert masters(ha) == {"redis"}
    for name in SENTINELS:
        wait_for(lambda name=name: sees_the_whole_topology(ha, name), timeout=30, interval=1, what=f"{name}'s view")
    assert ha.run("exec", "-T", "redis-replica", "redis-cli", "role").split()[:2] == ["slave", "redis"]

    # Redis: the master stops, the Sentinels promote the replica and all name it.
    stopped = time.monotonic()
    ha.run("stop", "redis")
    wait_for(lambda: masters(ha) == {"redis-replica"}, timeout=REDIS_FAILOVER_SECONDS, interval=0.5,
             what="every Sentinel naming redis-replica")  # fmt: skip
    redis_failover = time.monotonic() - stopped
    assert ha.run("exec", "-T", "redis-replica", "redis-cli", "role").split()[0] == "master"

    # PostgreSQL: the primary stops, the standby is promoted and takes writes; libpq's multi-host
    # URL (the app's DATABASE_URL form) skips the stopped host and lands on it.
    ha.run("stop", "postgres")
    assert sql(ha, "postgres-standby", "SELECT pg_promote()") == "t"
    assert sql(ha, "postgres-standby", "SELECT pg_is_in_recovery()") == "f"
    url = "postgresql://postgres:postgres@postgres:5432,postgres-standby:5432/messaging?target_session_attrs=read-write"
    written = ha.run("exec", "-T", "postgres-standby", "psql", url, "-Atc", "INSERT INTO ha_probe VALUES (2) RETURNING n")
    assert written.split()[0] == "2", written
    print(f"\nha data services healthy after {came_up:.1f} s; Redis failover seen by all Sentinels after {redis_failover:.1f} s")


@pytest.fixture
def ha_app(image) -> Iterator[Project]:
    """The whole stack under deploy/ha.yml on free loopback ports; short timeouts, so a lost claim returns soon."""
    project = new_project(image, "msghaapp")
    project.command = [*project.command, *HA_FILES]
    project.env.update(
        LOAD_DEMO_DATA="false",
        WEBHOOK_TIMEOUT_SECONDS=str(WEBHOOK_TIMEOUT_SECONDS),
        CLAIM_TIMEOUT_SECONDS="10",
        RETRY_BASE_SECONDS="1",
        RETRY_MAX_SECONDS="5",
        MAX_ATTEMPTS="30",
    )
    try:
        yield project
    finally:
        tear_down(project)


@dataclass
class Load:
    """Messages POSTed through nginx at a steady rate: when each id was answered 201, how many were refused."""

    api: str
    per_second: float = 10
    created: dict[str, float] = field(default_factory=dict)  # id -> wall clock of its 201
    refused: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        number = 0
        with requests.Session() as session:
            while not self.stopping.wait(1 / self.per_second):
                number += 1
                body = {"recipient_phone_number": f"+9053{number:09d}", "content": f"ha {number}"}
                try:
                    answer = session.post(f"{self.api}/messaging/messages", json=body, headers=AUTHORIZED, timeout=10)
                except requests.RequestException:
                    answer = None
                with self.lock:
                    if answer is not None and answer.status_code == 201:
                        self.created[answer.json()["id"]] = time.time()
                    else:
                        self.refused += 1

    def created_after(self, moment: float) -> dict[str, float]:
        with self.lock:
            return {message: at for message, at in self.created.items() if at > moment}


@dataclass
class Failover:
    dependency: str
    started: float  # wall clock, as the receiver stamps deliveries
    new_primary: float = 0.0  # the Sentinels name the replica, or the standby is promoted
    delivered: float = 0.0  # the first message created after `new_primary` reaches the receiver

    def line(self, created: list[float], received: list[float]) -> str:
        return (
            f"{self.dependency}: new primary after {self.new_primary - self.started:.1f} s; longest gap between 201s "
            f"{longest_gap(created, self.started, self.delivered):.1f} s, between deliveries "
            f"{longest_gap(received, self.started, self.delivered):.1f} s; a message created after the new primary "
            f"delivered {self.delivered - self.new_primary:.1f} s after it"
        )


def longest_gap(moments: list[float], start: float, end: float) -> float:
    points = [start, *sorted(moment for moment in moments if start < moment < end), end]
    return max(later - earlier for earlier, later in pairwise(points))


def accepted(receiver: str) -> dict[str, list[float]]:
    """Each Idempotency-Key the receiver answered 2xx, with when, earliest first."""
    times: dict[str, list[float]] = {}
    for delivery in requests.get(f"{receiver}/_receiver/deliveries", timeout=30).json():
        if delivery["status"] is not None and 200 <= delivery["status"] < 300:
            times.setdefault(delivery["key"], []).append(delivery["received_at"])
    return {key: sorted(received) for key, received in times.items()}


def first_delivery_of_messages_created_after(receiver: str, load: Load, moment: float) -> float | None:
    newer = load.created_after(moment)
    received = accepted(receiver)
    return min((received[message][0] for message in newer if message in received), default=None)


def follow(failover: Failover, receiver: str, load: Load) -> Failover:
    """Wait until a message created after the new primary took over reaches the receiver: the API wrote it to
    the writable PostgreSQL, beat and a worker reached the Redis master, the worker recorded it there."""
    failover.delivered = wait_for(
        lambda: first_delivery_of_messages_created_after(receiver, load, failover.new_primary),
        timeout=FOLLOW_SECONDS + 30, interval=0.5, what=f"deliveries after {failover.dependency}'s failover",
    )  # fmt: skip
    return failover


def redis_role(project: Project, service: str) -> str:
    """`master` or `slave`; empty while the server does not answer yet."""
    done = subprocess.run([*project.command, "exec", "-T", service, "redis-cli", "role"], check=False, cwd=ROOT,
                          env=project.env, capture_output=True, text=True, timeout=60)  # fmt: skip
    return (done.stdout.split() or [""])[0] if done.returncode == 0 else ""


def fail_redis_over(project: Project, receiver: str, load: Load) -> Failover:
    """As docs/operations.md says: stop the master, the Sentinels promote the replica, the old one rejoins as one."""
    failover = Failover("redis", time.time())
    project.run("stop", "redis")
    # One Sentinel asked while waiting (each `exec` takes about a second), then all three.
    wait_for(lambda: sentinel(project, SENTINELS[0], "get-master-addr-by-name", "mymaster")[0] == "redis-replica",
             timeout=REDIS_FAILOVER_SECONDS, interval=0.2, what="a Sentinel naming redis-replica")  # fmt: skip
    failover.new_primary = time.time()
    wait_for(lambda: masters(project) == {"redis-replica"}, timeout=10, interval=0.5, what="every Sentinel agreeing")
    follow(failover, receiver, load)
    project.run("start", "redis")
    wait_for(lambda: redis_role(project, "redis") == "slave", timeout=30, interval=1,
             what="the old master a replica of the new one")  # fmt: skip
    return failover


def fail_postgresql_over(project: Project, receiver: str, load: Load) -> Failover:
    """As docs/operations.md says: stop the primary, promote the standby; the app's multi-host URL finds it."""
    failover = Failover("postgresql", time.time())
    project.run("stop", "postgres")
    assert sql(project, "postgres-standby", "SELECT pg_promote()") == "t"
    failover.new_primary = time.time()
    return follow(failover, receiver, load)


def test_the_app_follows_both_failovers_and_every_message_reaches_the_receiver_once(ha_app):
    project = ha_app
    api = f"http://127.0.0.1:{project.env['API_PORT']}"
    receiver = f"http://127.0.0.1:{project.env['RECEIVER_HOST_PORT']}"
    project.run("up", "-d", "--no-build", "nginx", "worker", "beat", "receiver")
    data = {service: 1 for service in DATA_SERVICES}
    project.wait_healthy({**data, "api": 1, "worker": 2, "beat": 1, "receiver": 1})
    assert project.run("port", "nginx", "8080").strip() == f"127.0.0.1:{project.env['API_PORT']}"

    load = Load(api)
    loader = threading.Thread(target=load.run, daemon=True)
    loader.start()
    try:
        wait_for(lambda: first_delivery_of_messages_created_after(receiver, load, 0), timeout=60, interval=1,
                 what="the first messages at the receiver")  # fmt: skip
        failovers = [fail_redis_over(project, receiver, load), fail_postgresql_over(project, receiver, load)]
        calm = time.time()
        wait_for(lambda: len(load.created_after(calm)) >= 50, timeout=60, interval=1, what="50 messages after both")
    finally:
        load.stopping.set()
        loader.join(15)

    # The ledger, on the promoted standby: nothing pending or in flight once the claims have returned.
    primary = "postgres-standby"
    wait_for(lambda: sql(project, primary, "SELECT count(*) FROM messages WHERE sending_status IN (0, 3)") == "0",
             timeout=120, interval=2, what="nothing pending or in flight")  # fmt: skip
    counts = sql(project, primary, "SELECT sending_status, count(*) FROM messages GROUP BY 1")
    by_status = dict(line.split("|") for line in counts.split())
    stored = set(sql(project, primary, "SELECT id FROM messages").split())
    received = accepted(receiver)
    repeated = {key: times for key, times in received.items() if len(times) > 1}
    outside = [key for key, times in repeated.items() if not any(
        failover.started - WEBHOOK_TIMEOUT_SECONDS - 1 <= times[0] <= failover.delivered + WEBHOOK_TIMEOUT_SECONDS
        for failover in failovers)]
    audit = project.run("exec", "-T", "worker", "python", "-m", "messaging", "audit")
    print(f"\n{len(stored)} created ({len(load.created)} answered 201, {load.refused} refused), "
          f"{by_status}, {len(received)} received, {len(repeated)} received twice or more")
    created, all_received = list(load.created.values()), [moment for times in received.values() for moment in times]
    print("\n".join(failover.line(created, all_received) for failover in failovers))
    print(audit)

    assert set(load.created) <= stored, "every message the API acknowledged is stored"
    assert by_status == {"1": str(len(stored))}, f"every message sent, none failed or canceled: {by_status}"
    assert set(received) == stored, "the receiver got every message, and nothing else"
    assert not outside, f"received twice, first outside a failover's window: {outside}"
    for failover in failovers:
        assert failover.delivered - failover.new_primary <= FOLLOW_SECONDS, failover.line(created, all_received)
