"""deploy/ha.yml as compose reads it, without an engine: which servers it adds, where it points the
app, and that its Redis commands stay the default one plus what replication needs.

tests/e2e/test_compose_ha.py brings the pairs up for real, checks the standby streams and the
Sentinels agree, and fails each over.
"""

from __future__ import annotations

from messaging.settings import Settings
from tests.unit.test_compose import REQUIRED, ROOT, compose_services, rendered_text

HA_FILE = ROOT / "deploy" / "ha.yml"
SENTINELS = ("redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3")
DATA_SERVICES = ("postgres-standby", "postgres-replicator", "redis-replica", *SENTINELS)
APP_SERVICES = ("migrate", "api", "worker", "beat", "flower")
PASSWORD = REQUIRED["REDIS_PASSWORD"]


def test_the_ha_file_adds_a_postgres_standby_a_redis_replica_and_three_sentinels():
    services = compose_services(HA_FILE)
    assert set(DATA_SERVICES) <= set(services)
    assert not set(DATA_SERVICES) & set(compose_services()), "only when deploy/ha.yml is named"
    standby = services["postgres-standby"]
    assert standby["command"] == ["sh", "/deploy/ha/postgres-standby.sh"]
    assert standby["environment"]["PRIMARY_HOST"] == "postgres"
    assert standby["depends_on"]["postgres-replicator"]["condition"] == "service_completed_successfully"
    assert standby["volumes"] == [f"{ROOT}/deploy/ha:/deploy/ha:ro", "pgstandbydata:/var/lib/postgresql/data:rw"]
    # Both nodes read the same pg_hba.conf: either may be the standby after a failover.
    assert services["postgres"]["command"] == ["postgres", "-c", "hba_file=/deploy/ha/pg_hba.conf"]
    standby_script = (ROOT / "deploy" / "ha" / "postgres-standby.sh").read_text()
    assert "exec docker-entrypoint.sh postgres -c hba_file=/deploy/ha/pg_hba.conf" in standby_script
    assert 'pg_basebackup -h "$PRIMARY_HOST" -U replicator -D "$PGDATA"' in standby_script
    hba = [line.split() for line in (ROOT / "deploy" / "ha" / "pg_hba.conf").read_text().splitlines()]
    assert ["host", "replication", "replicator", "all", "scram-sha-256"] in hba, "the network replicates as replicator only"


def test_both_redis_servers_run_the_default_command_plus_what_following_a_master_needs():
    base = compose_services()["redis"]["command"]
    services = compose_services(HA_FILE)
    follow = ["--masterauth", PASSWORD, "--replica-announce-ip"]
    assert services["redis"]["command"] == [*base, *follow, "redis"]
    assert services["redis-replica"]["command"] == [*base, *follow, "redis-replica", "--replicaof", "redis", "6379"]


def test_three_sentinels_each_announce_their_own_name_and_run_as_redis():
    services = compose_services(HA_FILE)
    assert [services[name]["environment"]["SENTINEL_HOSTNAME"] for name in SENTINELS] == list(SENTINELS)
    for name in SENTINELS:
        sentinel = services[name]
        assert sentinel["user"] == "redis" and sentinel["command"] == ["sh", "/deploy/ha/redis-sentinel.sh"]
        assert sentinel["environment"]["REDIS_SENTINEL_MASTER"] == "mymaster"
        assert sentinel["environment"]["REDIS_PASSWORD"] == PASSWORD
    script = (ROOT / "deploy" / "ha" / "redis-sentinel.sh").read_text()
    for line in (
        "sentinel resolve-hostnames yes",
        "sentinel announce-hostnames yes",
        "sentinel monitor $REDIS_SENTINEL_MASTER redis 6379 2",  # two of the three agree to fail over
        'sentinel auth-pass $REDIS_SENTINEL_MASTER "$REDIS_PASSWORD"',
    ):
        assert line in script, line


def test_every_app_service_finds_the_writable_postgres_and_asks_the_sentinels_for_redis():
    services = compose_services(HA_FILE, POSTGRES_APP_PASSWORD="app-secret")
    sentinels = ";".join(f"sentinel://:{PASSWORD}@{name}:26379/0" for name in SENTINELS)
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"] == (
            "postgresql://messaging:app-secret@postgres:5432,postgres-standby:5432/messaging"
            "?target_session_attrs=read-write"
        ), name
        assert environment["REDIS_URL"] == environment["CELERY_BROKER_URL"] == sentinels, name
        assert environment["REDIS_SENTINEL_MASTER"] == "mymaster" and environment["REDIS_SENTINEL_PASSWORD"] == PASSWORD
        for dependency in ("postgres-standby", "redis-replica", *SENTINELS):
            assert services[name]["depends_on"][dependency]["condition"] == "service_healthy", (name, dependency)


def test_every_app_service_starts_with_the_ha_urls():
    for name in APP_SERVICES:
        Settings.from_env(compose_services(HA_FILE)[name]["environment"])


def test_the_replication_password_reaches_only_the_postgres_nodes():
    secrets = {"POSTGRES_REPLICATION_PASSWORD": "replication-sentinel", "POSTGRES_PASSWORD": "postgres-admin-sentinel"}
    services = compose_services(HA_FILE, **secrets)
    holders = {name for name, service in services.items() if "replication-sentinel" in rendered_text(service)}
    assert holders == {"postgres", "postgres-replicator", "postgres-standby"}
    superuser = {name for name, service in services.items() if "postgres-admin-sentinel" in rendered_text(service)}
    assert superuser == {"postgres", "postgres-role", "postgres-replicator"}, "the standby never holds the superuser's"
