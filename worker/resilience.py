"""Surviving a lost broker connection: the worker keeps running, and its logs stay readable.

Celery and kombu handle a Redis restart by reconnecting, but two races in kombu's Redis
transport can stop a threads-pool worker on the way (celery/kombu#582, #659): an ack,
or the restore of unacked messages, that runs after the channel's connection is gone
raises AttributeError instead of a connection error. Both are harmless to delivery:
an unacked message is handed out again by Redis, and a send whose claim is used up
does nothing. This module turns them into a logged warning.
"""

from __future__ import annotations

import logging

import kombu.exceptions
import redis
from celery import signals
from kombu.transport import redis as kombu_redis

from messaging.logs import Throttle, fields

log = logging.getLogger(__name__)
lost_connection_log = Throttle(seconds=30)

# Errors that mean "the broker or Redis is not there right now", not a bug.
CONNECTION_ERRORS = (ConnectionError, TimeoutError, redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError)


class OutageFilter(logging.Filter):
    """Drops the traceback of a connection error and repeats of the same message for 30 s."""

    def __init__(self, seconds: float = 30) -> None:
        super().__init__()
        self.throttle = Throttle(seconds)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, CONNECTION_ERRORS):
            return True
        if not self.throttle.allow(f"{record.name}:{record.msg}"):
            return False
        reason = str(error).replace("%", "%%")
        record.msg = f"{record.msg} ({type(error).__name__}: {reason}; repeats hidden for {self.throttle.seconds:g}s)"
        record.exc_info = None
        record.exc_text = None
        return True


@signals.after_setup_logger.connect
def install(logger: logging.Logger, **_: object) -> None:
    for handler in logger.handlers:
        if not any(isinstance(f, OutageFilter) for f in handler.filters):
            handler.addFilter(OutageFilter())


def _tolerating_lost_connection(method, event: str):
    """Wrap a kombu Redis QoS method so that the lost-connection race is logged, not fatal."""

    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except AttributeError:
            # The message stays in Redis's unacked set: Redis restores it after the
            # visibility timeout, and its send then finds the claim used up.
            if lost_connection_log.allow(event):
                log.warning("event=%s %s", event, fields(reason="broker connection lost"))

    wrapper.__wrapped__ = method
    return wrapper


for _name, _event in (("ack", "ack_lost"), ("restore_unacked", "restore_deferred")):
    _method = getattr(kombu_redis.QoS, _name)
    if not hasattr(_method, "__wrapped__"):
        setattr(kombu_redis.QoS, _name, _tolerating_lost_connection(_method, _event))
