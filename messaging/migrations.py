"""Apply the numbered files of sql/ in order, once each, safely from several processes at once."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import psycopg
from psycopg import sql

from messaging.db import wrap_errors

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATION_FILE = re.compile(r"^(\d{4})_[\w-]+\.sql$")
# Any fixed number: every migrating process waits on the same advisory lock.
MIGRATION_LOCK_KEY = 7_262_514_001
# First line of a migration that must run outside a transaction (CREATE INDEX CONCURRENTLY):
# its statements, each ending with ";" at the end of a line, run one by one.
NO_TRANSACTION = "-- migrate: no-transaction"
STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


def migration_files(directory: Path = SQL_DIR) -> list[Path]:
    """The migrations, in the order of their numbers."""
    return sorted(path for path in directory.iterdir() if MIGRATION_FILE.match(path.name))


def migrate(database_url: str, directory: Path = SQL_DIR) -> list[str]:
    """Create the database if missing, apply what is not applied yet; the names applied now."""
    with wrap_errors():
        ensure_database(database_url)
        with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
            _wait_for_lock(conn)
            try:
                return _apply_pending(conn, migration_files(directory))
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def _wait_for_lock(conn: psycopg.Connection, pause: float = 0.1) -> None:
    """Take the migration lock, trying again between statements rather than waiting inside one:
    a session blocked in pg_advisory_lock holds a snapshot, which another process's
    CREATE INDEX CONCURRENTLY waits for while holding the lock (a deadlock)."""
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()[0]:
        time.sleep(pause)


def _apply_pending(conn: psycopg.Connection, files: list[Path]) -> list[str]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    done = []
    for path in files:
        if path.name in applied:
            continue
        text = path.read_text()
        outside = text.startswith(NO_TRANSACTION)
        for statement in statements(text) if outside else ():
            conn.execute(statement)
        with conn.transaction():
            if not outside:
                conn.execute(text)
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.name,))
        log.info("event=migration_applied version=%s", path.name)
        done.append(path.name)
    return done


def statements(text: str) -> list[str]:
    """The statements of a no-transaction migration (comment-only pieces dropped)."""
    pieces = (piece.strip() for piece in STATEMENT_END.split(text))
    return [piece for piece in pieces if any(line and not line.startswith("--") for line in piece.splitlines())]


def ensure_database(database_url: str) -> None:
    """Create the target database when it does not exist yet (a fresh machine)."""
    try:
        psycopg.connect(database_url, connect_timeout=5).close()
        return
    except psycopg.OperationalError as error:
        if "does not exist" not in str(error):
            raise
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    name = info.pop("dbname")
    with psycopg.connect(**{**info, "dbname": "postgres"}, autocommit=True, connect_timeout=5) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log.info("event=database_created database=%s", name)
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another process created it first


def load_demo_data(database_url: str, path: Path = SQL_DIR / "demo_data.sql") -> int:
    """Insert the demo messages; returns how many rows were added."""
    with wrap_errors(), psycopg.connect(database_url, connect_timeout=5) as conn:
        cursor = conn.execute(path.read_text())
        return cursor.rowcount
