from __future__ import annotations

import logging

import redis

from worker.resilience import OutageFilter


def record(msg: str, error: BaseException | None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error else None
    return logging.LogRecord("kombu.message", logging.CRITICAL, __file__, 1, msg, ("x",), exc_info)


def test_a_connection_error_is_logged_once_per_interval_without_its_traceback():
    outage = OutageFilter(seconds=60)
    first = record("Couldn't ack %r", redis.ConnectionError("Connection refused"))
    assert outage.filter(first)
    assert first.exc_info is None
    assert first.getMessage() == "Couldn't ack 'x' (ConnectionError: Connection refused; repeats hidden for 60s)"
    assert not outage.filter(record("Couldn't ack %r", redis.ConnectionError("again")))


def test_other_errors_keep_their_traceback():
    outage = OutageFilter(seconds=60)
    bug = record("Task failed %r", ValueError("bug"))
    assert outage.filter(bug) and bug.exc_info is not None
    assert outage.filter(record("Task failed %r", ValueError("bug")))
    assert outage.filter(record("plain %r", None))

