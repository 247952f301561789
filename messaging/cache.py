"""Redis: the shared on/off switch for sending, and the cache of deliveries."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any
from uuid import UUID

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from messaging import timeouts
from messaging.errors import CacheUnavailable

log = logging.getLogger(__name__)

ENABLED_KEY = "messaging:enabled"
SENT_KEY_PREFIX = "messaging:sent:"
COUNT_KEY_PREFIX = "messaging:count:"
RESULT_POLL_SECONDS = 0.02
# A remembered value is recomputed no more often than once per this many times what computing it
# took: at 10,000,000 rows a count by status scans for about 2 s with three processes, and once
# per 2.5 s (half of a 5 s max age) it would keep a 2-core database busy most of the time.
RECOUNT_COST_FACTOR = 10
COST_TTL_SECONDS = 86_400

# The value and whether this caller claims the period to compute it afresh, in one step. The
# claim lasts the period: half the value's max age, or RECOUNT_COST_FACTOR times the last
# computation's cost if that is longer.
CLAIM_SCRIPT = """
local cost = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
local period = math.max(tonumber(ARGV[1]), math.floor(cost * tonumber(ARGV[2])))
local claimed = redis.call('SET', KEYS[2], '1', 'NX', 'PX', period)
return {redis.call('GET', KEYS[1]), claimed and 1 or 0}
"""


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
        self._claim = client.register_script(CLAIM_SCRIPT)

    def is_enabled(self) -> bool:
        """The switch; before anyone touched it, AUTO_START decides."""
        with wrap_errors():
            return self._enabled(self.client.get(ENABLED_KEY))

    def _enabled(self, switch: str | None) -> bool:
        return self.auto_start if switch is None else switch == "1"

    def set_enabled(self, enabled: bool) -> None:
        with wrap_errors():
            self.client.set(ENABLED_KEY, "1" if enabled else "0")

    def switch_on(self) -> bool:
        """Turn sending on; True only for the one caller that found it off, however many call at once."""
        with wrap_errors():
            before = self.client.set(ENABLED_KEY, "1", get=True)  # SET ... GET: one atomic step in Redis
        return not self._enabled(before)

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
        """A count made once per period rather than per call (see `remembered`)."""
        return int(self.remembered(name, ttl_seconds, count))

    def last_remembered(self, name: str) -> Any:
        """What `remembered(name, ...)` made last, if it stands; never computes nor claims."""
        with wrap_errors():
            cached = self.client.get(f"{COUNT_KEY_PREFIX}{name}")
        return None if cached is None else json.loads(cached)

    def remembered(self, name: str, max_age: float, compute: Callable[[], Any], wait_seconds: float = 5.0) -> Any:
        """`compute()`'s result (JSON), made once per period and shared by every process using this Redis.

        The period is half of `max_age`, or RECOUNT_COST_FACTOR times what the last `compute`
        took if that is longer: a count that scans 10,000,000 rows (about 2 s) then runs once
        per 20 s rather than keeping the database busy. The result is at most twice the period old.
        The caller that claims the period recomputes in a thread of this process and, like
        every other caller, gets the standing result at once. While there is no result yet,
        callers wait for the one computing it, up to `wait_seconds`, then compute it themselves
        (it may have died).
        """
        key = f"{COUNT_KEY_PREFIX}{name}"
        shortest_ms = max(1, int(max_age * 1000) // 2)
        deadline = time.monotonic() + wait_seconds
        while True:
            with wrap_errors():
                cached, claimed = self._claim(keys=[key, f"{key}:computing", f"{key}:cost"], args=[shortest_ms, RECOUNT_COST_FACTOR])
            if claimed and cached is not None:
                self._recount_later(key, shortest_ms, compute)
                return json.loads(cached)
            if claimed:
                return self._compute_and_keep(key, shortest_ms, compute)
            if cached is not None:
                return json.loads(cached)
            if time.monotonic() >= deadline:
                return compute()
            time.sleep(RESULT_POLL_SECONDS)

    def _recount_later(self, key: str, shortest_ms: int, compute: Callable[[], Any]) -> None:
        def recount() -> None:
            try:
                self._compute_and_keep(key, shortest_ms, compute)
            except Exception:  # the standing result serves on; the next period's caller tries again
                log.exception("recounting %s failed", key)

        threading.Thread(target=recount, name=f"recount {key}", daemon=True).start()

    def _compute_and_keep(self, key: str, shortest_ms: int, compute: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            value = compute()
        except Exception:
            with suppress(redis.RedisError):
                self.client.delete(f"{key}:computing")  # the next caller tries at once
            raise
        cost_ms = int((time.monotonic() - started) * 1000)
        period_ms = max(shortest_ms, cost_ms * RECOUNT_COST_FACTOR)
        with suppress(redis.RedisError):  # the result stands; the others only compute it again
            pipe = self.client.pipeline(transaction=False)
            # The result outlives the next period's recount; the claim restarts now, so the
            # next recount begins a whole period after this one ended.
            pipe.set(key, json.dumps(value), px=2 * period_ms)
            pipe.set(f"{key}:computing", "1", px=period_ms)
            pipe.set(f"{key}:cost", cost_ms, ex=COST_TTL_SECONDS)
            pipe.execute()
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
