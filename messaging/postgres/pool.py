"""PostgreSQL access: one connection pool per process, and psycopg errors converted at this edge."""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from messaging import timeouts
from messaging.errors import DatabaseUnavailable
from messaging.postgres.queries import QUERIES

log = logging.getLogger(__name__)

Row = dict[str, Any]

# The server cancels a statement running longer than this: well above the slowest legitimate one
# (claiming 100,000 rows, the largest batch: bench/PROFILE.md), so only a runaway is cut short.
STATEMENT_TIMEOUT_MS = 30_000


def connection_options(url: str, statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> dict[str, Any]:
    """libpq parameters that bound every wait on PostgreSQL; what `url` sets itself wins.

    The client gives up a silent connection within about 9 to 13 s (keepalives, tcp_user_timeout),
    and so does the server (its own keepalive settings, for this session), so the session of a
    vanished client does not hold a connection slot for hours. 0 means no statement timeout.
    """
    given = psycopg.conninfo.conninfo_to_dict(url)
    client = {
        "connect_timeout": timeouts.CONNECT_TIMEOUT_SECONDS,
        "keepalives": 1,
        "keepalives_idle": timeouts.KEEPALIVE_IDLE_SECONDS,
        "keepalives_interval": timeouts.KEEPALIVE_INTERVAL_SECONDS,
        "keepalives_count": timeouts.KEEPALIVE_PROBES,
        "tcp_user_timeout": timeouts.UNACKNOWLEDGED_LIMIT_MS,
    }
    server = {
        "statement_timeout": statement_timeout_ms,
        "tcp_keepalives_idle": timeouts.KEEPALIVE_IDLE_SECONDS,
        "tcp_keepalives_interval": timeouts.KEEPALIVE_INTERVAL_SECONDS,
        "tcp_keepalives_count": timeouts.KEEPALIVE_PROBES,
        "tcp_user_timeout": timeouts.UNACKNOWLEDGED_LIMIT_MS,
    }
    # The URL's own options come last: PostgreSQL applies the last -c of a name.
    options = " ".join([*(f"-c {name}={value}" for name, value in server.items()), given.get("options") or ""]).strip()
    return {**{name: value for name, value in client.items() if name not in given}, "options": options}


def pool_size(concurrency: int) -> int:
    """Connections are held only around statements, never during a POST, so a handful serve many senders."""
    return min(max(concurrency, 2), 16)


def create_pool(
    url: str, *, max_size: int = 10, name: str = "messaging", on_failover: Callable[[], None] | None = None
) -> FailoverPool:
    """Open a pool that connects in the background, so a process starts even while PostgreSQL is down.

    `on_failover` is called when the pool finds its primary replaced (see FailoverPool).
    """
    return FailoverPool(
        url,
        min_size=1,
        max_size=max_size,
        name=name,
        kwargs={"autocommit": True, "row_factory": dict_row, **connection_options(url)},
        # A connection killed by a restart or pg_terminate_backend is replaced, not handed out.
        check=check_connection,
        timeout=5,
        open=True,
        on_failover=on_failover,
    )


class FailoverPool(psycopg_pool.ConnectionPool):
    """A pool that follows its primary when a standby replaces it.

    New connections find the primary themselves when the URL lists several hosts with
    `target_session_attrs=read-write` (libpq tries each in turn). What the pool must do is drop a
    connection whose server refused a write as read-only (a demoted primary that kept its sessions,
    a read-only switch): closed before it returns, it is replaced instead of lent again.
    A change of server (another host or port on a new connection, or a read-only refusal) is
    logged and reported to `on_failover`, once per change.
    """

    def __init__(self, *args: Any, on_failover: Callable[[], None] | None = None, **kwargs: Any) -> None:
        self._on_failover = on_failover
        self._server: tuple[str, int] | None = None
        self._server_lock = threading.Lock()
        super().__init__(*args, configure=self._note_server, **kwargs)

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        with super().connection(timeout) as conn:
            try:
                yield conn
            except psycopg.errors.ReadOnlySqlTransaction:
                conn.close()
                self._server_changed(None)
                raise

    def _note_server(self, conn: psycopg.Connection) -> None:
        self._server_changed((conn.info.host, conn.info.port))

    def _server_changed(self, server: tuple[str, int] | None) -> None:
        """Remember the server now in use (None: the last one refused a write) and report a change."""
        with self._server_lock:
            before, self._server = self._server, server
        if before is None or before == server:
            return  # the first connection, or one more after a refusal already reported
        log.warning("event=failover dependency=postgresql server=%s", "read-only" if server is None else
                    f"{server[0]}:{server[1]}")
        if self._on_failover is not None:
            self._on_failover()


def check_connection(conn: psycopg.Connection) -> None:
    """The pool's check before lending a connection, with a round trip only when one can fail.

    A server that ends a session (pg_terminate_backend, a restart) sends an error and closes the
    socket, which makes it readable. Pinging every connection instead (the pool's own check)
    cost a round trip per statement, a sizeable share of a send task's database time (bench/PROFILE.md).
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
    except (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.ReadOnlySqlTransaction) as error:
        # A read-only refusal means this server is no longer the primary: unavailable until the pool finds it.
        raise DatabaseUnavailable(_first_line(error)) from error


def fetch_all(pool: psycopg_pool.ConnectionPool, query: str, **params: Any) -> list[Row]:
    """Run a named query in its own transaction and return every row."""
    with wrap_errors(), pool.connection() as conn:
        return conn.execute(QUERIES[query], params).fetchall()


def fetch_one(pool: psycopg_pool.ConnectionPool, query: str, **params: Any) -> Row | None:
    """Run a named query in its own transaction and return its first row, if any."""
    with wrap_errors(), pool.connection() as conn:
        return conn.execute(QUERIES[query], params).fetchone()


def ping(pool: psycopg_pool.ConnectionPool) -> None:
    """One round trip, within 2 s: raises DatabaseUnavailable when PostgreSQL does not answer."""
    with wrap_errors(), pool.connection(timeout=2) as conn:
        conn.execute("SELECT 1")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
