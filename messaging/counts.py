"""Messages by status for /messaging/status and /metrics: counted once per few seconds, not per request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from psycopg_pool import ConnectionPool

from messaging import store
from messaging.cache import Cache
from messaging.errors import CacheUnavailable
from messaging.models import Status

# The counts are at most this old, or 20 times what counting takes if that is longer (see
# Cache.remembered). Counting scans the table (about 80 ms at 1,000,000 rows, 2 s at
# 10,000,000), so an open endpoint must not run it per request, nor make a request wait for it.
MAX_AGE_SECONDS = 5.0


class StatusCounts:
    """The counts, shared by every API process through Redis; while Redis is down, each process keeps its own."""

    def __init__(self, pool: ConnectionPool, cache: Cache, max_age: float = MAX_AGE_SECONDS) -> None:
        self.pool = pool
        self.cache = cache
        self.max_age = max_age
        self._local = _Memo(max_age)

    def get(self) -> dict[Status, int]:
        try:
            by_label = self.cache.remembered("by_status", self.max_age, self._count)
        except CacheUnavailable:
            by_label = self._local.get(self._count)
        return {status: by_label.get(status.label, 0) for status in Status}

    def _count(self) -> dict[str, int]:
        return {status.label: total for status, total in store.count_by_status(self.pool).items()}


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
