"""A Redis client that fails fast, and redis-py's errors converted at this edge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from messaging import timeouts
from messaging.errors import CacheUnavailable


def create_client(url: str) -> redis.Redis:
    """A client whose calls fail fast while Redis is down or silent instead of hanging a worker.

    A command that times out is tried once more on a fresh connection: that replaces a
    connection that went silent, and more tries would only stretch a real outage (redis-py's
    default is 10, which bounds a command at over a minute while Redis is unreachable).
    """
    return redis.Redis.from_url(
        url,
        **timeouts.redis_socket_options(url),
        retry=Retry(NoBackoff(), retries=1),
        decode_responses=True,
    )


@contextmanager
def wrap_errors() -> Iterator[None]:
    """Turn any Redis error into CacheUnavailable."""
    try:
        yield
    except redis.RedisError as error:
        raise CacheUnavailable(str(error) or type(error).__name__) from error


def ping(client: redis.Redis) -> None:
    """One round trip: raises CacheUnavailable when Redis does not answer."""
    with wrap_errors():
        client.ping()
