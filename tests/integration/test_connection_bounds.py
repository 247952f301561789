"""The bounds on every wait reach the real sockets and sessions, not only the settings.

tests/faults/test_silent_connections.py shows what they do for a silent connection; this checks
that each kind of connection the service opens carries them."""

from __future__ import annotations

import os
import socket
from dataclasses import replace

import psycopg
import pytest
from celery import Celery

from api import _celery_producer
from messaging.postgres import pool as db
from messaging.redis import client as cache
from tests.integration.conftest import BROKERS, broker_url, requires_rabbitmq
from worker.factory import create_celery_app

# Keepalive probes after 5 s idle, every 2 s, 3 of them; unacknowledged data for at most 8 s.
BOUNDED = {"TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 3, "TCP_USER_TIMEOUT": 8_000}


def socket_bounds(fileno: int) -> dict[str, int]:
    """SO_KEEPALIVE and the TCP bounds set on a connected socket."""
    with socket.socket(fileno=os.dup(fileno)) as sock:
        found = {name: sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name)) for name in BOUNDED}
        found["SO_KEEPALIVE"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    return found


def shown(conn: psycopg.Connection, *names: str) -> dict[str, str]:
    return {name: conn.execute(f"SHOW {name}").fetchone()[name] for name in names}


def test_pooled_postgresql_connections_are_bounded_on_both_sides(database_url):
    pool = db.create_pool(database_url, max_size=1, name="bounds")
    try:
        with pool.connection() as conn:
            assert socket_bounds(conn.fileno()) == {**BOUNDED, "SO_KEEPALIVE": 1}
            # The server ends its side of a vanished client's session too, and cuts runaway statements.
            assert shown(conn, "statement_timeout", "tcp_keepalives_idle", "tcp_user_timeout") == {
                "statement_timeout": "30s",
                "tcp_keepalives_idle": "5",
                "tcp_user_timeout": "8000",  # milliseconds
            }
    finally:
        pool.close()


def test_the_database_url_keeps_its_own_settings(database_url):
    url = f"{database_url}?keepalives_idle=9&options=-c%20statement_timeout%3D2s%20-c%20search_path%3Dpublic"
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row, **db.connection_options(url)) as conn:
        assert socket_bounds(conn.fileno())["TCP_KEEPIDLE"] == 9
        assert shown(conn, "statement_timeout", "search_path", "tcp_keepalives_idle") == {
            "statement_timeout": "2s",
            "search_path": "public",
            "tcp_keepalives_idle": "5",
        }


def test_migrations_have_keepalives_but_no_statement_timeout(database_url):
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row, **db.connection_options(database_url, 0)) as conn:
        assert socket_bounds(conn.fileno())["TCP_USER_TIMEOUT"] == BOUNDED["TCP_USER_TIMEOUT"]
        assert shown(conn, "statement_timeout") == {"statement_timeout": "0"}


def test_redis_client_connections_are_bounded(redis_url):
    client = cache.create_client(redis_url)
    try:
        client.ping()
        connection = client.connection_pool.get_connection()
        try:
            assert socket_bounds(connection._sock.fileno()) == {**BOUNDED, "SO_KEEPALIVE": 1}
            assert connection.socket_timeout == 3
        finally:
            client.connection_pool.release(connection)
    finally:
        client.close()


def broker_socket(app: Celery, connection) -> int:
    """The file number of a connected broker connection's socket (Redis or AMQP)."""
    if app.conf.broker_url.startswith("amqp"):
        return connection.connection.sock.fileno()
    client = connection.default_channel.client
    client.ping()
    redis_connection = client.connection_pool.get_connection()
    client.connection_pool.release(redis_connection)
    return redis_connection._sock.fileno()


@pytest.mark.parametrize("broker", BROKERS)
@pytest.mark.parametrize("build", [create_celery_app, _celery_producer], ids=["worker", "api-producer"])
def test_broker_connections_are_bounded(broker, build, base_settings):
    app = build(replace(base_settings, broker_url=broker_url(broker, base_settings)))
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        assert socket_bounds(broker_socket(app, connection)) == {**BOUNDED, "SO_KEEPALIVE": 1}


@requires_rabbitmq
def test_the_workers_rabbitmq_connection_has_heartbeats_every_few_seconds(base_settings):
    """A consumer that hears nothing for two heartbeats reconnects (Celery's default, 120 s, would
    leave it on a silent connection for four minutes)."""
    app = create_celery_app(replace(base_settings, broker_url=broker_url("rabbitmq", base_settings)))
    # As the worker's consumer opens it.
    with app.connection_for_read(heartbeat=app.conf.broker_heartbeat) as connection:
        connection.ensure_connection(max_retries=1)
        assert connection.get_heartbeat_interval() == 5
