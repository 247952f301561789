"""Redis: the shared on/off switch for sending, and the cache of deliveries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import redis

from messaging.errors import CacheUnavailable

ENABLED_KEY = "messaging:enabled"
SENT_KEY_PREFIX = "messaging:sent:"
COUNT_KEY_PREFIX = "messaging:count:"


def create_client(url: str) -> redis.Redis:
    """A client whose calls fail fast while Redis is down instead of hanging a worker."""
    return redis.Redis.from_url(
        url,
        socket_timeout=3,
        socket_connect_timeout=3,
        health_check_interval=30,
        decode_responses=True,
    )


@contextmanager
def wrap_errors() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as error:
        raise CacheUnavailable(str(error) or type(error).__name__) from error


def sent_key(message_id: UUID | str) -> str:
    return f"{SENT_KEY_PREFIX}{message_id}"


class Cache:
    """The Redis keys this service owns."""

    def __init__(self, client: redis.Redis, ttl_seconds: int, auto_start: bool) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.auto_start = auto_start

    def is_enabled(self) -> bool:
        """The switch; before anyone touched it, AUTO_START decides."""
        with wrap_errors():
            return self._enabled(self.client.get(ENABLED_KEY))

    def _enabled(self, switch: str | None) -> bool:
        return self.auto_start if switch is None else switch == "1"

    def set_enabled(self, enabled: bool) -> None:
        with wrap_errors():
            self.client.set(ENABLED_KEY, "1" if enabled else "0")

    def remember_sent(
        self, message_id: UUID, webhook_message_id: str | None, sent_at: datetime, pipe: redis.client.Pipeline | None = None
    ) -> None:
        """Cache a delivery; given a pipeline, only add the command to it."""
        entry = json.dumps({"messageId": webhook_message_id, "sent_at": sent_at.isoformat()})
        if pipe is not None:
            pipe.set(sent_key(message_id), entry, ex=self.ttl_seconds)
            return
        with wrap_errors():
            self.client.set(sent_key(message_id), entry, ex=self.ttl_seconds)

    def sent_entry(self, message_id: UUID) -> dict[str, Any] | None:
        """The cached delivery of a message, if any."""
        with wrap_errors():
            return _entry(self.client.get(sent_key(message_id)))

    def switch_and_delivery(self, message_id: UUID, *also: str) -> tuple[bool, dict[str, Any] | None, list[str | None]]:
        """The switch, the message's cached delivery and the keys `also` named, in one round trip (a send asks all)."""
        with wrap_errors():
            switch, entry, *values = self.client.mget(ENABLED_KEY, sent_key(message_id), *also)
        return self._enabled(switch), _entry(entry), values

    def remembered_count(self, name: str, ttl_seconds: int, count: Callable[[], int]) -> int:
        """A count kept for `ttl_seconds`, so that an expensive count runs once per period, not per call."""
        key = f"{COUNT_KEY_PREFIX}{name}"
        with wrap_errors():
            cached = self.client.get(key)
        if cached is not None:
            return int(cached)
        value = count()
        with wrap_errors():
            self.client.set(key, value, ex=ttl_seconds)
        return value

    def ping(self) -> None:
        with wrap_errors():
            self.client.ping()


def _entry(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None
