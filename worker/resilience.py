"""Readable logs through a lost broker connection: one line per cause per 30 s, no tracebacks.

Celery and kombu reconnect by themselves; while they do, every retry logs a traceback. The
kombu race that used to stop a threads-pool worker on the way is handled by the app's own
transport (worker/transport.py).
"""

from __future__ import annotations

import logging

import kombu.exceptions
import redis
from celery import signals

from messaging.logs import Throttle

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
