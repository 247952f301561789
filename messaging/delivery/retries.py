"""When to try again: a message's backoff between attempts, and the quick retries that record an
outcome already POSTed through a database blip."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from messaging.errors import DatabaseUnavailable

T = TypeVar("T")

# Recording an outcome retries through a database blip: 0.5 s, 1 s, 2 s apart, starting no
# retry after 4 s, so a stopping worker's last task ends within WEBHOOK_TIMEOUT_SECONDS + 5 s
# unless one statement itself hangs (bounded by the connection's tcp_user_timeout).
DB_RETRY_FIRST_PAUSE = 0.5
DB_RETRY_SECONDS = 4.0


def retry_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Exponential backoff with equal jitter; a provider's Retry-After wins, within the cap."""
    if retry_after is not None:
        return min(cap, max(0.0, retry_after))
    ceiling = min(cap, base * 2 ** min(attempt - 1, 32))
    return ceiling / 2 + random.random() * ceiling / 2


def with_db_retries(record: Callable[[], T], attempts: int = 4) -> T:
    """Recording an outcome already POSTed is worth a few quick retries through a database blip,
    no longer than DB_RETRY_SECONDS: a worker told to stop waits for its tasks, and the cache
    entry written first keeps the message from being POSTed again if the record is lost."""
    give_up_at = time.monotonic() + DB_RETRY_SECONDS
    for attempt in range(attempts):
        try:
            return record()
        except DatabaseUnavailable:
            pause = DB_RETRY_FIRST_PAUSE * 2**attempt
            if attempt == attempts - 1 or time.monotonic() + pause > give_up_at:
                raise
            time.sleep(pause)
