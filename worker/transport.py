"""kombu's Redis transport for this app, surviving one race on a lost broker connection.

Two races in kombu's Redis transport can stop a threads-pool worker while Redis restarts
(celery/kombu#582, #659): an ack, or the restore of unacked messages, that runs after the
channel lost its connection looks the connection up on None and raises AttributeError instead
of a connection error. Both are harmless to delivery: the unacked message stays in Redis's
unacked set and is handed out again after the visibility timeout, and a send whose claim is
used up does nothing.

The app selects this transport through `broker_transport` (worker/factory.py), so nothing of
kombu is patched: other apps in the process keep kombu's own. Only that exact error is caught;
tests/integration/test_transport.py reproduces the race on kombu's own class and fails if kombu changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from messaging.logs import Throttle, fields

log = logging.getLogger(__name__)
lost_connection_log = Throttle(seconds=30)

# kombu's class paths for `broker_transport`: the app uses them only with a Redis broker URL.
TRANSPORT = "worker.transport:Transport"
SENTINEL_TRANSPORT = "worker.transport:SentinelTransport"


def is_lost_connection_race(error: AttributeError, channel: kombu_redis.Channel) -> bool:
    """The race: the channel's connection (or its client) is gone and kombu looked an attribute up on None."""
    connection = channel.connection
    gone = connection is None or getattr(connection, "client", error) is None
    return gone and error.obj is None and error.name in ("client", "hostname")


class QoS(kombu_redis.QoS):
    def ack(self, delivery_tag: str) -> None:
        try:
            super().ack(delivery_tag)
        except AttributeError as error:
            if not is_lost_connection_race(error, self.channel):
                raise
            # kombu's own bookkeeping still learns the task is done, so the prefetch slot frees up;
            # Redis keeps the message in its unacked set until the visibility timeout restores it.
            virtual.QoS.ack(self, delivery_tag)
            _warn("ack_lost")

    def restore_unacked(self, client=None) -> None:
        try:
            super().restore_unacked(client)
        except AttributeError as error:
            if not is_lost_connection_race(error, self.channel):
                raise
            # The messages stay in Redis's unacked set: Redis restores them after the visibility timeout.
            _warn("restore_deferred")


class Channel(kombu_redis.Channel):
    """kombu's channel, reusing one client per connection pool for its commands outside the consumer loop.

    kombu builds a new `redis.Redis` for each such command (`conn_or_acquire` with no client):
    two or three per task (receipt bookkeeping, ack), and building a client costs as much CPU
    as the command (bench/PROFILE.md has the figures). A client over a pool is thread-safe, and
    the pool is where the connections are, so one per pool changes nothing else: a channel
    whose pool is replaced (after a fork) gets a new client.
    """

    QoS = QoS
    _reused_client: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        pool = self.pool  # a closed channel fails here, as in kombu
        reused = self._reused_client
        if reused is None or reused.connection_pool is not pool:
            reused = self._reused_client = self._create_client()
        yield reused


class Transport(kombu_redis.Transport):
    Channel = Channel


def _warn(event: str) -> None:
    if lost_connection_log.allow(event):
        log.warning("event=%s %s", event, fields(reason="broker connection lost"))


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """The same channel over the master the Sentinels name (kombu's `sentinel://` transport)."""


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
