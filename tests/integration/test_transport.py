"""The app's Redis transport (worker/transport.py) against a real Redis: kombu's race reproduced on
kombu's own class, survived on ours, and nothing else swallowed."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import kombu
import pytest
from kombu.transport import redis as kombu_redis

from worker import transport
from worker.factory import create_celery_app

# The kombu release worker/transport.py was checked against. When the pin moves, re-read
# kombu/transport/redis.py (QoS.ack, restore_unacked, Channel._connparams) and update this.
KOMBU_CHECKED = "5.7.0"


@pytest.fixture
def channel(redis_url) -> Iterator[tuple[kombu_redis.Channel, str]]:
    """A channel of our transport holding one unacked message, as a worker's does."""
    with kombu.Connection(redis_url, transport=transport.Transport) as connection:
        channel = connection.channel()
        queue = kombu.Queue("race", kombu.Exchange("race"), routing_key="race")(channel)
        queue.declare()
        kombu.Producer(channel).publish({"id": 1}, exchange=queue.exchange, routing_key="race")
        message = queue.get(no_ack=False)
        yield channel, message.delivery_tag


def lose_connection(channel: kombu_redis.Channel) -> None:
    """The state the race leaves: pools dropped and the channel's connection gone, under a thread still acking."""
    channel._disconnect_pools()
    channel.connection = None


def test_the_pinned_kombu_is_the_one_the_transport_was_checked_against():
    assert kombu.__version__ == KOMBU_CHECKED, "re-check worker/transport.py against this kombu"


def test_kombus_own_ack_raises_the_race_the_transport_recognises(channel):
    chan, tag = channel
    lose_connection(chan)
    with pytest.raises(AttributeError) as raised:
        kombu_redis.QoS.ack(chan.qos, tag)
    assert (raised.value.name, raised.value.obj) == ("client", None)
    assert transport.is_lost_connection_race(raised.value, chan)


def test_kombus_own_restore_raises_the_race_the_transport_recognises(channel):
    chan, _ = channel
    lose_connection(chan)
    with pytest.raises(AttributeError) as raised:
        kombu_redis.QoS.restore_unacked(chan.qos)
    assert transport.is_lost_connection_race(raised.value, chan)


def test_our_ack_survives_the_race_and_keeps_kombus_bookkeeping(channel, caplog):
    chan, tag = channel
    qos = chan.qos
    assert tag in qos._delivered
    lose_connection(chan)
    transport.lost_connection_log._last.clear()  # an earlier test's worker may have logged it
    with caplog.at_level(logging.WARNING, logger=transport.__name__):
        qos.ack(tag)
    assert tag in qos._dirty, "kombu counts the delivery as done: its prefetch slot frees up"
    assert "event=ack_lost" in caplog.text


def test_our_restore_survives_the_race(channel):
    chan, _ = channel
    lose_connection(chan)
    chan.qos.restore_unacked()


def test_another_attribute_error_is_not_swallowed(channel):
    chan, tag = channel
    connection = chan.connection
    chan._disconnect_pools()
    chan.connection = object()  # a connection without the attribute kombu wants: a bug, not the race
    try:
        with pytest.raises(AttributeError):
            chan.qos.ack(tag)
    finally:
        chan.connection = connection


def test_the_app_uses_the_transport_on_redis_only(base_settings):
    from dataclasses import replace

    assert create_celery_app(base_settings).conf.broker_transport == transport.TRANSPORT
    amqp = create_celery_app(replace(base_settings, broker_url="amqp://guest:guest@127.0.0.1:5672//"))
    assert amqp.conf.broker_transport is None


def test_kombus_classes_are_left_as_they_are():
    assert kombu_redis.QoS.ack is not transport.QoS.ack
    assert not hasattr(kombu_redis.QoS.ack, "__wrapped__")


def test_commands_outside_the_consumer_loop_reuse_one_client_per_pool(channel):
    chan, tag = channel
    with chan.conn_or_acquire() as first, chan.conn_or_acquire() as second:
        assert first is second
        assert first.connection_pool is chan.pool
    given = object()
    with chan.conn_or_acquire(given) as client:
        assert client is given
    chan.qos.ack(tag)  # kombu's own bookkeeping goes through it
    chan._disconnect_pools()  # as after a fork: a new pool, and a client over it
    with chan.conn_or_acquire() as after:
        assert after is not first
        assert after.connection_pool is chan.pool
        assert after.ping()


def test_kombus_channel_builds_a_client_per_command(channel):
    """Why the transport keeps one: if kombu starts reusing clients, the override can go."""
    chan, _ = channel
    with kombu_redis.Channel.conn_or_acquire(chan) as first, kombu_redis.Channel.conn_or_acquire(chan) as second:
        assert first is not second
