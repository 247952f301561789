"""The bench's own database and Redis db, and bulk-loaded messages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import kombu
import psycopg
import redis
from psycopg import sql

from messaging.postgres import migrations
from messaging.task_names import BATCH_QUEUE

SERVER_URL = "postgresql://postgres@127.0.0.1:5432"
DATABASE = "messaging_bench"
REDIS_SERVER = "redis://127.0.0.1:6379"
# The tests claim a Redis db number with this key in db 0; holding it keeps them off the bench's db.
REDIS_DB_LOCK = "messaging-tests:db-lock:{}"
PREFERRED_REDIS_DBS = (14, 13, 12, 11, 10)
BENCH_LOCK_KEY = 7_262_514_614  # held for a whole run: two benches on one database would corrupt both


@dataclass(frozen=True)
class Place:
    database_url: str
    redis_url: str


@contextmanager
def place(database: str = DATABASE) -> Iterator[Place]:
    """A migrated bench database and a Redis db number nobody else holds for the run."""
    database_url = f"{SERVER_URL}/{database}"
    migrations.migrate(database_url)
    guard = connect(database_url)
    if not guard.execute("SELECT pg_try_advisory_lock(%s)", (BENCH_LOCK_KEY,)).fetchone()[0]:
        guard.close()
        raise SystemExit(f"bench: another bench is running on {database}")
    lock = redis.Redis.from_url(f"{REDIS_SERVER}/0")
    token = f"bench-{time.time()}"
    for number in PREFERRED_REDIS_DBS:
        if lock.set(REDIS_DB_LOCK.format(number), token, nx=True, ex=3600):
            break
    else:
        raise SystemExit("bench: every Redis db it may use is held by a test run")
    try:
        yield Place(database_url, f"{REDIS_SERVER}/{number}")
    finally:
        if lock.get(REDIS_DB_LOCK.format(number)) == token.encode():
            lock.delete(REDIS_DB_LOCK.format(number))
        lock.close()
        guard.close()


def connect(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url, autocommit=True)


def reset(where: Place) -> None:
    """Empty tables, empty Redis db (flag, cache, broker queues, metrics)."""
    with connect(where.database_url) as conn:
        conn.execute("TRUNCATE messages, message_attempts, message_events, receipt_inbox, delivery_receipts")
    client = redis.Redis.from_url(where.redis_url)
    client.flushdb()
    client.close()


def purge_broker(broker_url: str) -> None:
    """Empty the service's queues on a RabbitMQ broker (a Redis broker lives in the db `reset` flushes)."""
    if not broker_url.startswith("amqp"):
        return
    with kombu.Connection(broker_url) as connection:
        channel = connection.channel()
        for name in ("celery", BATCH_QUEUE):
            queue = kombu.Queue(name, kombu.Exchange(name), routing_key=name)(channel)
            queue.declare()
            queue.purge()


@contextmanager
def indexes_dropped(conn: psycopg.Connection) -> Iterator[None]:
    """The table's indexes (primary key too) dropped for a bulk load and built again after it.

    Inserting 10,000,000 rows into six live indexes (one on a random UUID) costs several times
    the insert itself; building each index once from the loaded rows is a sort.
    """
    indexes = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname, "
        "       pg_get_constraintdef(c.oid) "
        "FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
        "WHERE i.indrelid = 'messages'::regclass"
    ).fetchall()
    for name, _definition, constraint, _rule in indexes:
        if constraint:
            conn.execute(sql.SQL("ALTER TABLE messages DROP CONSTRAINT {}").format(sql.Identifier(constraint)))
        else:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    try:
        yield
    finally:
        # Enough memory that each build sorts in memory (the session's setting only).
        conn.execute("SET maintenance_work_mem = '512MB'")
        for _name, definition, constraint, rule in indexes:
            if constraint:
                conn.execute(
                    sql.SQL("ALTER TABLE messages ADD CONSTRAINT {} {}").format(sql.Identifier(constraint), sql.SQL(rule))
                )
            else:
                conn.execute(definition)
        conn.execute("RESET maintenance_work_mem")


def load_pending(conn: psycopg.Connection, count: int) -> None:
    """`count` due pending messages, created one millisecond apart (oldest first is well defined)."""
    conn.execute(
        sql.SQL(
            "INSERT INTO messages (content, recipient_phone_number, created_at, next_attempt_at) "
            "SELECT 'bench message ' || n, '+90532' || lpad(n::text, 7, '0'), "
            "       now() - interval '1 day' + n * interval '1 millisecond', now() - interval '1 day' "
            "FROM generate_series(1, {}) AS n"
        ).format(sql.Literal(count))
    )


def load_sent(conn: psycopg.Connection, count: int) -> None:
    """`count` sent messages, `sent_at` spread one second apart over the past.

    Ids and webhook ids are hashes of the row number, not gen_random_uuid() and md5(): on this
    machine those two cost about 10 s per 1,000,000 rows, half the load. The ids are as
    scattered as random UUIDs, and the same in every run. Each row has its encoding and segments
    stored, as every message created through the API has.
    """
    conn.execute(
        sql.SQL(
            "INSERT INTO messages (id, content, recipient_phone_number, sending_status, attempts, "
            "                      created_at, updated_at, sent_at, webhook_message_id, encoding, segments) "
            "SELECT (lpad(to_hex(hashint8extended(n, 0)), 16, '0') "
            "        || lpad(to_hex(hashint8extended(n, 1)), 16, '0'))::uuid, "
            "       'bench message ' || n, '+90533' || lpad((n % 10000000)::text, 7, '0'), 1, 1, "
            "       now() - n * interval '1 second' - interval '1 minute', now() - n * interval '1 second', "
            "       now() - n * interval '1 second', 'wh-' || to_hex(hashint8extended(n, 2)), 'GSM-7', 1 "
            "FROM generate_series(1, {}) AS n"
        ).format(sql.Literal(count))
    )


def count_sent(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM messages WHERE sending_status = 1").fetchone()[0]


def count_callbacks_delivered(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM message_events WHERE callback_state = 'delivered'").fetchone()[0]


def counts(conn: psycopg.Connection) -> dict[int, int]:
    return dict(conn.execute("SELECT sending_status, count(*) FROM messages GROUP BY 1").fetchall())


def vacuum(conn: psycopg.Connection) -> None:
    """Fresh statistics and visibility map, as autovacuum would leave a table at rest."""
    conn.execute("VACUUM (ANALYZE) messages")
