"""Real PostgreSQL and Redis for every test run: a database and a Redis db number of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from psycopg import sql

from localrun import postgres_server, servers
from messaging.postgres import migrations
from messaging.runtime import Runtime
from messaging.settings import Settings
from receiver import Receiver
from tests.go_service import create_go_table, scratch_database

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Where the tests' servers listen: the machine's, or the embedded ones started below on these ports.
POSTGRES_PORT = urlsplit(POSTGRES_URL).port or 5432
REDIS_PORT = urlsplit(REDIS_SERVER).port or 6379
REDIS_DB_LOCK = "messaging-tests:db-lock:{}"
TEST_CONNECTION_NAME = "messaging-tests"
UNIT_TESTS = Path(__file__).parent / "unit"
EMBEDDED = pytest.StashKey[list]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before the first test that needs them: PostgreSQL and Redis, embedded where none answers; say which."""
    if all(Path(item.path).is_relative_to(UNIT_TESTS) for item in session.items):
        return
    try:
        session.config.stash[EMBEDDED] = servers.ensure(POSTGRES_URL, REDIS_SERVER)
    except servers.ServerError as error:
        raise pytest.UsageError(str(error)) from None
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("servers: " + "; ".join(server.describe() for server in session.config.stash[EMBEDDED]))


def pytest_unconfigure(config: pytest.Config) -> None:
    servers.stop(config.stash.get(EMBEDDED, []))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this run, dropped at the end."""
    name = f"messaging_test_{uuid.uuid4().hex[:10]}"
    url = f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    migrations.migrate(url)
    yield url
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def postgres_tools_path(request: pytest.FixtureRequest) -> str:
    """PATH for psql and pg_dump: the embedded server's own first when the tests' PostgreSQL is embedded
    (the machine's may be older, and pg_dump refuses a newer server)."""
    embedded = any(server.kind == "PostgreSQL" and server.data_dir for server in request.config.stash.get(EMBEDDED, []))
    return os.pathsep.join([str(postgres_server.binaries()), os.environ["PATH"]]) if embedded else os.environ["PATH"]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis db number no other test run holds (a lock key in db 0 claims it)."""
    lock_client = redis.Redis.from_url(f"{REDIS_SERVER}/0")
    token = uuid.uuid4().hex
    for number in range(1, 16):
        if lock_client.set(REDIS_DB_LOCK.format(number), token, nx=True, ex=3600):
            break
    else:
        pytest.fail("every Redis db 1-15 is held by another test run")
    url = f"{REDIS_SERVER}/{number}"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()
    if lock_client.get(REDIS_DB_LOCK.format(number)) == token.encode():
        lock_client.delete(REDIS_DB_LOCK.format(number))


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture(scope="session")
def base_settings(database_url: str, redis_url: str, receiver: Receiver) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        broker_url=redis_url,
        webhook_url=receiver.url,
        webhook_auth_key="test-secret-key",
        webhook_timeout_seconds=2.0,
        send_interval_seconds=120.0,
        send_batch_size=2,
        retry_base_seconds=0.0,
        retry_max_seconds=0.0,
        claim_timeout_seconds=30.0,
    )


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Per-test settings: override with `dataclasses.replace(settings, ...)`."""
    return base_settings


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that touches the services starts from an empty table, Redis db and receiver."""
    if not {"database_url", "redis_url"} & set(request.fixturenames):
        yield
        return
    database = request.getfixturevalue("database_url")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("TRUNCATE messages, message_attempts, receipt_inbox, delivery_receipts, message_events")
    redis.Redis.from_url(request.getfixturevalue("redis_url")).flushdb()
    if "receiver" in request.fixturenames:
        request.getfixturevalue("receiver").reset()
    yield


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    opened = Runtime.open(settings, concurrency=8, name="tests")
    yield opened
    opened.close()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """A plain autocommit connection for arranging and checking rows."""
    with psycopg.connect(
        database_url, autocommit=True, row_factory=psycopg.rows.dict_row, application_name=TEST_CONNECTION_NAME
    ) as conn:
        yield conn


@pytest.fixture
def make_message(db: psycopg.Connection):
    """Insert a message; keyword arguments set any column."""
    counter = iter(range(10**9))

    def make(**columns) -> uuid.UUID:
        n = next(counter)
        values = {
            "content": f"message {n}",
            "recipient_phone_number": f"+90532{n:07d}",
            **columns,
        }
        names = sql.SQL(", ").join(map(sql.Identifier, values))
        marks = sql.SQL(", ").join(sql.Placeholder(name) for name in values)
        query = sql.SQL("INSERT INTO messages ({}) VALUES ({}) RETURNING id").format(names, marks)
        return db.execute(query, values).fetchone()["id"]

    return make


@pytest.fixture
def go_database() -> Iterator[str]:
    """A scratch database holding the Go service's table, as it left it; dropped after the test."""
    with scratch_database(POSTGRES_URL) as url:
        create_go_table(url)
        yield url
