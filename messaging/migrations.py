"""Apply the numbered files of sql/ in order, once each, safely from several processes at once."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import psycopg
from psycopg import sql

from messaging.db import connection_options, wrap_errors

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATION_FILE = re.compile(r"^(\d{4})_[\w-]+\.sql$")
# Any fixed number: every migrating process waits on the same advisory lock.
MIGRATION_LOCK_KEY = 7_262_514_001


def _options(database_url: str) -> dict:
    """Keepalives as for the service, but no statement timeout: a migration may rightly run for
    minutes (an index built on a large table, or waiting on the lock while another process migrates)."""
    return connection_options(database_url, statement_timeout_ms=0)


def migration_files(directory: Path = SQL_DIR) -> list[Path]:
    """The migrations, in the order of their numbers."""
    return sorted(path for path in directory.iterdir() if MIGRATION_FILE.match(path.name))


def migrate(database_url: str, directory: Path = SQL_DIR) -> list[str]:
    """Create the database if missing, apply what is not applied yet; the names applied now."""
    with wrap_errors():
        ensure_database(database_url)
        with psycopg.connect(database_url, autocommit=True, **_options(database_url)) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            try:
                return _apply_pending(conn, migration_files(directory))
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


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
        with conn.transaction():
            conn.execute(path.read_text())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.name,))
        log.info("event=migration_applied version=%s", path.name)
        done.append(path.name)
    return done


def ensure_database(database_url: str) -> None:
    """Create the target database when it does not exist yet (a fresh machine)."""
    try:
        psycopg.connect(database_url, **_options(database_url)).close()
        return
    except psycopg.OperationalError as error:
        if "does not exist" not in str(error):
            raise
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    name = info.pop("dbname")
    with psycopg.connect(**{**info, "dbname": "postgres", **_options(database_url)}, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log.info("event=database_created database=%s", name)
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another process created it first


def load_demo_data(database_url: str, path: Path = SQL_DIR / "demo_data.sql") -> int:
    """Insert the demo messages; returns how many rows were added."""
    with wrap_errors(), psycopg.connect(database_url, **_options(database_url)) as conn:
        cursor = conn.execute(path.read_text())
        return cursor.rowcount
