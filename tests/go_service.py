"""Databases as the Go service left them: its GORM table, its plain INSERTs, and scratch databases to hold them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql

# Exactly what the Go service's GORM AutoMigrate creates (docs/cutover.md).
GO_TABLE = """
CREATE TABLE "messages" ("id" uuid, "content" varchar(100) NOT NULL,
  "recipient_phone_number" varchar(20) NOT NULL, "sending_status" smallint NOT NULL,
  "created_at" timestamptz, "updated_at" timestamptz, PRIMARY KEY ("id"));
CREATE INDEX "idx_messages_sending_status_created_at" ON "messages" ("sending_status", "created_at");
"""
GO_INSERT = (
    "INSERT INTO messages (id, content, recipient_phone_number, sending_status, created_at, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
# The first released sql/0001_messages.sql: what databases of ours already migrated hold.
RELEASED_0001 = Path(__file__).resolve().parent / "fixtures" / "0001_messages_as_released.sql"
# The Go service's statuses.
PENDING, SENT, FAILED = 0, 1, 2
# A time well before any test runs, for rows the Go service wrote.
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """An empty database of its own, dropped afterwards."""
    name = f"messaging_adopt_{uuid.uuid4().hex[:10]}"
    admin = f"{server_url.rsplit('/', 1)[0]}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_go_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(GO_TABLE)


def insert_go_row(
    conn: psycopg.Connection,
    *,
    status: int,
    created_at: datetime | None,
    updated_at: datetime | None = None,
    content: str = "Your verification code is 9321.",
    phone: str = "+905311112233",
) -> uuid.UUID:
    """One row as the Go service's callers inserted it: nothing checked."""
    message_id = uuid.uuid4()
    conn.execute(GO_INSERT, (message_id, content, phone, status, created_at, updated_at or created_at))
    return message_id


def create_released_database(url: str) -> None:
    """A database of ours migrated by the first release: its 0001 applied and recorded."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RELEASED_0001.read_text())
        conn.execute(
            "CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
            "INSERT INTO schema_migrations (version) VALUES ('0001_messages.sql')"
        )


def schema_of(url: str) -> dict[str, list[tuple]]:
    """The messages table's columns, constraints and indexes, as comparable tuples."""
    with psycopg.connect(url) as conn:
        return {
            "columns": conn.execute(
                "SELECT ordinal_position, column_name, data_type, character_maximum_length, column_default, is_nullable "
                "FROM information_schema.columns WHERE table_name = 'messages' ORDER BY ordinal_position"
            ).fetchall(),
            "constraints": conn.execute(
                # NOT NULL is the columns' is_nullable; PostgreSQL 18 also lists it here, named by how it came.
                "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
                "WHERE conrelid = 'messages'::regclass AND contype <> 'n' ORDER BY conname"
            ).fetchall(),
            "indexes": conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'messages' ORDER BY indexname"
            ).fetchall(),
        }


def rows_of(url: str) -> dict[uuid.UUID, dict]:
    """Every row of the messages table at `url`, by id."""
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return {row["id"]: row for row in conn.execute("SELECT * FROM messages")}
