"""deploy/ha.yml for real: the PostgreSQL standby streams from the primary, the three Sentinels agree
on the Redis master, and each pair fails over as docs/operations.md ("Failover in compose") says.

Only the data services run: the app's side of the topology is checked by tests/unit/test_compose_ha.py
and by the failover tests in tests/faults. Needs a Docker engine; skips without one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from harness.stack import environment
from tests.e2e.test_compose import Project, compose_command, docker_answers, tear_down
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.compose, pytest.mark.timeout(600)]
SENTINELS = ("redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3")
DATA_SERVICES = ("postgres", "postgres-standby", "redis", "redis-replica", *SENTINELS)
# Sentinel's down-after-milliseconds (5 s, deploy/ha/redis-sentinel.sh) plus an election: well inside 15 s.
REDIS_FAILOVER_SECONDS = 15


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
    project = Project([*compose_command(), "-f", "docker-compose.yml", "-f", "deploy/ha.yml"], env, name)
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
