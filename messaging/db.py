"""PostgreSQL access: one connection pool per process, and psycopg errors converted at this edge."""

from __future__ import annotations

import logging
import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from messaging.errors import DatabaseUnavailable
from messaging.queries import QUERIES

log = logging.getLogger(__name__)

Row = dict[str, Any]


def create_pool(url: str, *, max_size: int = 10, name: str = "messaging") -> psycopg_pool.ConnectionPool:
    """Open a pool that connects in the background, so a process starts even while PostgreSQL is down."""
    return psycopg_pool.ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        name=name,
        kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 5},
        # A connection killed by a restart or pg_terminate_backend is replaced, not handed out.
        check=check_connection,
        timeout=5,
        open=True,
    )


def check_connection(conn: psycopg.Connection) -> None:
    """The pool's check before lending a connection, with a round trip only when one can fail.

    A server that ends a session (pg_terminate_backend, a restart) sends an error and closes the
    socket, which makes it readable. Pinging every connection instead (the pool's own check)
    cost a round trip per statement, about a sixth of a send task's database time in a profile.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        psycopg_pool.ConnectionPool.check_connection(conn)


@contextmanager
def wrap_errors() -> Iterator[None]:
    """Turn 'the database is not there' into DatabaseUnavailable; let real bugs through."""
    try:
        yield
    except psycopg_pool.PoolTimeout as error:
        raise DatabaseUnavailable("no connection within the pool timeout") from error
    except (psycopg.OperationalError, psycopg.InterfaceError) as error:
        raise DatabaseUnavailable(_first_line(error)) from error


def fetch_all(pool: psycopg_pool.ConnectionPool, query: str, **params: Any) -> list[Row]:
    """Run a named query in its own transaction and return every row."""
    with wrap_errors(), pool.connection() as conn:
        return conn.execute(QUERIES[query], params).fetchall()


def fetch_one(pool: psycopg_pool.ConnectionPool, query: str, **params: Any) -> Row | None:
    """Run a named query in its own transaction and return its first row, if any."""
    with wrap_errors(), pool.connection() as conn:
        return conn.execute(QUERIES[query], params).fetchone()


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
