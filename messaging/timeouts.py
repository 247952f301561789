"""How long a process waits on PostgreSQL, Redis and the broker before giving up.

A connection whose packets are dropped without a reset (a failover, a lost NAT entry, a
partition) blocks a read for the kernel's retransmission timeout, about 15 minutes, unless
the socket says otherwise. Every connection of this service says: an idle connection is probed
after KEEPALIVE_IDLE_SECONDS, every KEEPALIVE_INTERVAL_SECONDS, and dies after KEEPALIVE_PROBES
unanswered probes (about 9 s, the user timeout capping the probing); data left unacknowledged
for UNACKNOWLEDGED_LIMIT_MS ends it too. A connection idle at the cut and used just before its
first probe is thus given up within about 13 s (measured: tests/faults/test_silent_connections.py).
The error then reaches the caller, and the pool or client opens a fresh connection.
docs/timeouts.md lists every bound and why.
"""

from __future__ import annotations

import socket
from typing import Any

KEEPALIVE_IDLE_SECONDS = 5
KEEPALIVE_INTERVAL_SECONDS = 2
KEEPALIVE_PROBES = 3
# 10 s let a connection first used 5 s after a partition live 16 s in a fault test (a loaded machine).
UNACKNOWLEDGED_LIMIT_MS = 8_000

CONNECT_TIMEOUT_SECONDS = 5
# A Redis command answers in well under a millisecond here; a reply this late means a dead link.
REDIS_SOCKET_TIMEOUT_SECONDS = 3
# redis-py pings a connection idle this long before using it; kombu also drops a BRPOP connection
# whose reply is this much overdue (BRPOP itself times out server-side after 1 s).
REDIS_HEALTH_CHECK_SECONDS = 5
# How long a stop waits for a Redis replica to hold it (Sentinels only; messaging/redis/switch.py).
SWITCH_REPLICA_WAIT_MS = 2_000
# AMQP heartbeats: a consumer that hears nothing for two of them reconnects.
BROKER_HEARTBEAT_SECONDS = 5

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def tcp_socket_options() -> dict[int, int]:
    """The keepalive and unacknowledged-data limits as setsockopt(IPPROTO_TCP, ...) pairs.

    Options this platform lacks are left out (they are Linux's; macOS has the first three).
    """
    wanted = {
        "TCP_KEEPIDLE": KEEPALIVE_IDLE_SECONDS,
        "TCP_KEEPINTVL": KEEPALIVE_INTERVAL_SECONDS,
        "TCP_KEEPCNT": KEEPALIVE_PROBES,
        "TCP_USER_TIMEOUT": UNACKNOWLEDGED_LIMIT_MS,
    }
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def redis_socket_options(url: str) -> dict[str, Any]:
    """redis-py's connection settings for `url`; kombu's Redis transport takes the same names."""
    options: dict[str, Any] = {
        "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        "health_check_interval": REDIS_HEALTH_CHECK_SECONDS,
    }
    if not url.startswith("unix:"):  # a Unix socket has no TCP keepalive (and redis-py refuses the option)
        options.update(socket_keepalive=True, socket_keepalive_options=tcp_socket_options())
    return options


def broker_transport_options(broker_url: str) -> dict[str, Any]:
    """Celery's `broker_transport_options` that bound every wait on the broker's connections.

    Redis: socket timeouts and keepalives through kombu's transport options, and kombu's own
    check of the BRPOP connection. RabbitMQ (py-amqp): keepalives and the unacknowledged-data
    limit through `socket_settings`; the consumer also has heartbeats (`broker_heartbeat`).
    """
    if broker_url.partition(":")[0].split("+")[0] in AMQP_SCHEMES:
        return {"socket_settings": tcp_socket_options()}
    return redis_socket_options(broker_url)
