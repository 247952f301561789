"""Apply the numbered files of sql/ in order, once each, safely from several processes at once.

A file runs in one transaction, or in several where it has `-- migrate: commit` lines, so
that a long step (a backfill, an index build) does not hold the locks of a short one (a
column change). It is recorded as applied with its last step; each step must therefore be
safe to run again. Notices a file raises (RAISE NOTICE) are logged: they tell the operator
what the migration found and did.
"""

from __future__ import annotations

import logging
import re
import time
from functools import partial
from pathlib import Path

import psycopg
from psycopg import sql

from messaging import logs
from messaging.postgres.pool import connection_options, wrap_errors
from messaging.errors import MigrationFailed

log = logging.getLogger(__name__)

# The numbered migrations and the demo data, at the top of the checkout (and of the image).
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
MIGRATION_FILE = re.compile(r"^(\d{4})_[\w-]+\.sql$")
STEP_BREAK = re.compile(r"^-- migrate: commit$", re.MULTILINE)
# Any fixed number: every migrating process waits on the same advisory lock.
MIGRATION_LOCK_KEY = 7_262_514_001
# A migration waiting for a table lock makes every later query on that table wait behind
# it: give up after this long (the operator runs migrate again) rather than stall readers.
LOCK_TIMEOUT = "5s"
# The server function behind PL/pgSQL's RAISE: a notice the migration raised itself, not
# one of the server's own ("already exists, skipping").
RAISED_BY_MIGRATION = "exec_stmt_raise"
# First line of a migration that must run outside a transaction (CREATE INDEX CONCURRENTLY):
# its statements, each ending with ";" at the end of a line, run one by one.
NO_TRANSACTION = "-- migrate: no-transaction"
STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


def _options(database_url: str) -> dict:
    """Keepalives as for the service, but no statement timeout: a migration may rightly run for
    minutes (an index built on a large table, or waiting on the lock while another process migrates)."""
    return connection_options(database_url, statement_timeout_ms=0)


def migration_files(directory: Path = SQL_DIR) -> list[Path]:
    """The migrations, in the order of their numbers."""
    return sorted(path for path in directory.iterdir() if MIGRATION_FILE.match(path.name))


def migrate(database_url: str, directory: Path = SQL_DIR) -> list[str]:
    """Create the database if missing, apply what is not applied yet; the names applied now.

    Raises DatabaseUnavailable when PostgreSQL cannot be reached, MigrationFailed (naming the
    file and the cause in one line) for any other database error.
    """
    try:
        with wrap_errors():
            ensure_database(database_url)
            with psycopg.connect(database_url, autocommit=True, **_options(database_url)) as conn:
                _wait_for_lock(conn)
                try:
                    conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
                    return _apply_pending(conn, migration_files(directory))
                finally:
                    if not conn.broken:
                        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    except psycopg.Error as error:
        raise MigrationFailed(_cause(error)) from error


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
        handler = partial(_log_notice, path.name)
        conn.add_notice_handler(handler)
        try:
            _apply(conn, path)
        except psycopg.Error as error:
            raise MigrationFailed(f"{path.name}: {_cause(error)}") from error
        finally:
            conn.remove_notice_handler(handler)
        log.info("event=migration_applied version=%s", path.name)
        done.append(path.name)
    return done


def _apply(conn: psycopg.Connection, path: Path) -> None:
    """Run a file's steps, one transaction each; the last one records the file as applied.

    A file whose first line is NO_TRANSACTION runs statement by statement, outside any transaction.
    """
    text = path.read_text()
    if text.startswith(NO_TRANSACTION):
        for statement in statements(text):
            conn.execute(statement)
        steps = [""]
    else:
        steps = [step for step in STEP_BREAK.split(text) if step.strip()]
    for number, step in enumerate(steps, start=1):
        with conn.transaction():
            if step:
                conn.execute(step)
            if number == len(steps):
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.name,))


def statements(text: str) -> list[str]:
    """The statements of a no-transaction migration (comment-only pieces dropped)."""
    pieces = (piece.strip() for piece in STATEMENT_END.split(text))
    return [piece for piece in pieces if any(line and not line.startswith("--") for line in piece.splitlines())]


def _log_notice(version: str, notice: psycopg.errors.Diagnostic) -> None:
    if notice.source_function == RAISED_BY_MIGRATION:
        log.warning("event=migration_notice %s", logs.fields(version=version, message=notice.message_primary))


def _cause(error: psycopg.Error) -> str:
    """The server's one-line message (no DETAIL, CONTEXT or query), else the driver's first line."""
    return error.diag.message_primary or (str(error).strip().splitlines() or [type(error).__name__])[0]


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
    """Insert the demo messages; returns how many were added (the script's one answer)."""
    with wrap_errors(), psycopg.connect(database_url, **_options(database_url)) as conn:
        [added] = conn.execute(path.read_text()).fetchone()
        return added
