"""Counts that are costly to make (messages by status, list totals), made once per period and
shared by every process through Redis rather than made per request."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Protocol

import redis

from messaging.domain.message import Status
from messaging.errors import CacheUnavailable
from messaging.redis import keys, scripts
from messaging.redis.client import wrap_errors

log = logging.getLogger(__name__)

RESULT_POLL_SECONDS = 0.02
# A remembered value is recomputed no more often than once per this many times what computing it
# took: a count that scans for seconds would otherwise keep a small database busy most of the time.
RECOUNT_COST_FACTOR = 10
COST_TTL_SECONDS = 86_400
# The counts by status are at most this old, or twice RECOUNT_COST_FACTOR times what counting takes
# if that is longer (a result lives two periods). Counting scans the table, so an open endpoint
# must not run it per request, nor make a request wait for it.
MAX_AGE_SECONDS = 5.0
# A list's total is exact up to this many messages; above, a count at most TOTAL_MAX_AGE_SECONDS old.
EXACT_TOTAL_UP_TO = 10_000
TOTAL_MAX_AGE_SECONDS = 10


class Counting(Protocol):
    """What the counts are made from (messaging.postgres.records.Records)."""

    def count_by_status(self) -> dict[Status, int]: ...
    def count_in_status(self, status: Status, *, up_to: int | None = None) -> int: ...
    def count_sent_by_delivery(self, delivery: str, *, up_to: int | None = None) -> int: ...


class Remembered:
    """Values computed once per period by one caller and read by every process using this Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._claim = scripts.register(client, "remembered.lua", "claim_period")

    def get(self, name: str, max_age: float, compute: Callable[[], Any], wait_seconds: float = 5.0) -> Any:
        """`compute()`'s result (JSON), made once per period and shared by every process using this Redis.

        The period is half of `max_age`, or RECOUNT_COST_FACTOR times what the last `compute`
        took if that is longer. The result is at most twice the period old. The caller that
        claims the period recomputes in a thread of this process and, like every other caller,
        gets the standing result at once. While there is no result yet, callers wait for the one
        computing it, up to `wait_seconds`, then compute it themselves (it may have died).
        """
        names = keys.remembered(name)
        shortest_ms = max(1, int(max_age * 1000) // 2)
        deadline = time.monotonic() + wait_seconds
        while True:
            with wrap_errors():
                cached, claimed = self._claim(keys=list(names), args=[shortest_ms, RECOUNT_COST_FACTOR])
            if claimed and cached is not None:
                self._recount_later(names, shortest_ms, compute)
                return json.loads(cached)
            if claimed:
                return self._compute_and_keep(names, shortest_ms, compute)
            if cached is not None:
                return json.loads(cached)
            if time.monotonic() >= deadline:
                return compute()
            time.sleep(RESULT_POLL_SECONDS)

    def last(self, name: str) -> Any:
        """What `get(name, ...)` made last, if it stands; never computes nor claims."""
        with wrap_errors():
            cached = self.client.get(keys.remembered(name)[0])
        return None if cached is None else json.loads(cached)

    def _recount_later(self, names: tuple[str, str, str], shortest_ms: int, compute: Callable[[], Any]) -> None:
        def recount() -> None:
            try:
                self._compute_and_keep(names, shortest_ms, compute)
            except Exception:  # the standing result serves on; the next period's caller tries again
                log.exception("recounting %s failed", names[0])

        threading.Thread(target=recount, name=f"recount {names[0]}", daemon=True).start()

    def _compute_and_keep(self, names: tuple[str, str, str], shortest_ms: int, compute: Callable[[], Any]) -> Any:
        key, computing, cost = names
        started = time.monotonic()
        try:
            value = compute()
        except Exception:
            with suppress(redis.RedisError):
                self.client.delete(computing)  # the next caller tries at once
            raise
        cost_ms = int((time.monotonic() - started) * 1000)
        period_ms = max(shortest_ms, cost_ms * RECOUNT_COST_FACTOR)
        with suppress(redis.RedisError):  # the result stands; the others only compute it again
            pipe = self.client.pipeline(transaction=False)
            # The result outlives the next period's recount; the claim restarts now, so the
            # next recount begins a whole period after this one ended.
            pipe.set(key, json.dumps(value), px=2 * period_ms)
            pipe.set(computing, "1", px=period_ms)
            pipe.set(cost, cost_ms, ex=COST_TTL_SECONDS)
            pipe.execute()
        return value


class StatusCounts:
    """Messages by status for /messaging/status and /metrics, shared by every API process; while
    Redis is down, each process keeps its own."""

    def __init__(self, records: Counting, remembered: Remembered, max_age: float = MAX_AGE_SECONDS) -> None:
        self.records = records
        self.remembered = remembered
        self.max_age = max_age
        self._local = _Memo(max_age)

    def get(self) -> dict[Status, int]:
        try:
            by_label = self.remembered.get("by_status", self.max_age, self._count)
        except CacheUnavailable:
            by_label = self._local.get(self._count)
        return {status: by_label.get(status.label, 0) for status in Status}

    def _count(self) -> dict[str, int]:
        return {status.label: total for status, total in self.records.count_by_status().items()}


class ListTotals:
    """The `total` of a page of sent or failed messages: exact up to EXACT_TOTAL_UP_TO, above that
    a count at most TOTAL_MAX_AGE_SECONDS old, shared by every API process.

    Counting a large status costs more than the page itself. Once the shared count stands far
    above EXACT_TOTAL_UP_TO, even the capped exact count (reading up to EXACT_TOTAL_UP_TO + 1
    rows) is skipped.
    """

    def __init__(self, records: Counting, remembered: Remembered) -> None:
        self.records = records
        self.remembered = remembered

    def total(self, status: Status, *, delivery: str | None = None) -> int:
        """The total of sent or failed messages; of sent ones whose delivery status is `delivery`, if given."""
        if delivery is None:
            name, count = status.label, lambda up_to=None: self.records.count_in_status(status, up_to=up_to)
        else:
            name, count = f"sent:{delivery}", lambda up_to=None: self.records.count_sent_by_delivery(delivery, up_to=up_to)
        try:
            last = self.remembered.last(name)
            if last is not None and last > 2 * EXACT_TOTAL_UP_TO:
                return self._shared(name, count)
            total = count(up_to=EXACT_TOTAL_UP_TO + 1)
            return total if total <= EXACT_TOTAL_UP_TO else self._shared(name, count)
        except CacheUnavailable:
            return count()

    def _shared(self, name: str, count: Callable[..., int]) -> int:
        return int(self.remembered.get(name, TOTAL_MAX_AGE_SECONDS, count))


class _Memo:
    """One process's last result and when it was made; one computation at a time."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._value: Any = None
        self._made_at = float("-inf")

    def get(self, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if time.monotonic() - self._made_at >= self.max_age:
                self._value, self._made_at = compute(), time.monotonic()
            return self._value
