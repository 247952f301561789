"""A Redis client that fails fast and follows a Sentinel failover, and redis-py's errors converted at this edge."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from messaging import sentinel_urls, timeouts
from messaging.settings import Settings
from messaging.errors import CacheUnavailable

log = logging.getLogger(__name__)

# What a Sentinel connection takes of the master's connection options: the same bounds on every wait.
SENTINEL_SOCKET_OPTIONS = ("socket_timeout", "socket_connect_timeout", "socket_keepalive", "socket_keepalive_options")


def connect(settings: Settings, on_failover: Callable[[], None] | None = None) -> redis.Redis:
    """The process's client for REDIS_URL: a plain one, or one that asks the Sentinels for the master."""
    return create_client(
        settings.redis_url,
        sentinel_master=settings.redis_sentinel_master,
        sentinel_password=settings.redis_sentinel_password,
        on_failover=on_failover,
    )


def create_client(
    url: str,
    *,
    sentinel_master: str = sentinel_urls.DEFAULT_SENTINEL_MASTER,
    sentinel_password: str = "",
    on_failover: Callable[[], None] | None = None,
) -> redis.Redis:
    """A client whose calls fail fast while Redis is down or silent instead of hanging a worker.

    A command that times out is tried once more on a fresh connection: that replaces a
    connection that went silent, and more tries would only stretch a real outage (redis-py's
    default is 10, which bounds a command at over a minute while Redis is unreachable).
    With a `sentinel://` URL, that fresh connection goes to the master the Sentinels name then:
    redis-py turns a demoted master's ReadOnlyError into a ConnectionError and drops the
    connection, so no write is ever retried on it. `on_failover` is called when the master changes.
    """
    options = dict(timeouts.redis_socket_options(url), retry=Retry(NoBackoff(), retries=1), decode_responses=True)
    if not sentinel_urls.uses_sentinels(url):
        return redis.Redis.from_url(url, **options)
    named = sentinel_urls.sentinels(url)
    manager = Sentinel(list(named.addresses), sentinel_kwargs=_sentinel_options(url, sentinel_password))
    return manager.master_for(
        sentinel_master,
        connection_pool_class=FollowingMasterPool,
        on_master_change=on_failover,
        db=named.db,
        username=named.username,
        password=named.password,
        **options,
    )


def sentinel_transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's Sentinel transport options for CELERY_BROKER_URL: none unless it names Sentinels.

    The Sentinels' own connections get the same bounds as the master's (`sentinel_kwargs`).
    """
    if not sentinel_urls.uses_sentinels(settings.broker_url):
        return {}
    sentinel_kwargs = _sentinel_options(settings.broker_url, settings.redis_sentinel_password)
    return {"master_name": settings.redis_sentinel_master, "sentinel_kwargs": sentinel_kwargs}


def _sentinel_options(url: str, password: str) -> dict[str, Any]:
    """The Sentinels' own connections: the master's socket bounds, and their password if they have one."""
    options = timeouts.redis_socket_options(url)
    chosen = {name: options[name] for name in SENTINEL_SOCKET_OPTIONS if name in options}
    return {**chosen, "password": password} if password else chosen


class FollowingMasterPool(SentinelConnectionPool):
    """redis-py's Sentinel pool, reporting each change of master it finds (once per change).

    Connections ask the pool's proxy, not the pool, for the master's address: the proxy's
    lookup is the one watched.
    """

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        self._on_master_change = kwargs.pop("on_master_change", None)
        self._master: tuple[str, int] | None = None
        self._master_lock = threading.Lock()
        super().__init__(service_name, sentinel_manager, **kwargs)
        look_up = self.proxy.get_master_address
        self.proxy.get_master_address = lambda: self._note_master(look_up())

    def _note_master(self, address: tuple[str, int]) -> tuple[str, int]:
        with self._master_lock:
            before, self._master = self._master, address
        if before is not None and before != address:
            log.warning("event=failover dependency=redis master=%s:%s", *address)
            if self._on_master_change is not None:
                self._on_master_change()
        return address


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
