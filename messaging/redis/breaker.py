"""The circuit breaker as the API sees it: its state for /status and /metrics, and closing it by hand.

The workers' side, which opens and closes it as answers come, is messaging/redis/flow.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import redis

from messaging.logs import fields
from messaging.redis import keys, scripts
from messaging.redis.client import wrap_errors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BreakerStatus:
    state: str  # closed, open, half_open
    since: datetime | None
    why: str | None
    reopens_at: datetime | None  # open: when the probe may go
    paused_until: datetime | None  # a provider's 429 Retry-After, for every worker
    pause_why: str | None


class Breaker:
    """The shared breaker and pause, read and closed by hand (one per API process)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._close = scripts.register(client, "flow.lua", "prelude", "open_and_close", "close_by_hand")

    def close_by_hand(self, why: str = "closed by hand (POST /messaging/start)") -> bool:
        """Close an open or half-open breaker; True when it was not closed."""
        with wrap_errors():
            closed = self._close(keys=[keys.FLOW_BREAKER, keys.FLOW_CALLS, keys.METRICS_BREAKER], args=[why])
        if closed:
            log.info("event=breaker_closed %s", fields(why=why))
        return bool(closed)

    def status(self) -> BreakerStatus:
        """The breaker and the pause as every worker sees them."""
        with wrap_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(keys.FLOW_BREAKER)
            pipe.hgetall(keys.FLOW_PAUSE)
            found, pause = pipe.execute()
        return read_status(found, pause)


def read_status(breaker: dict[str, str], pause: dict[str, str]) -> BreakerStatus:
    """The status from the hashes at keys.FLOW_BREAKER and keys.FLOW_PAUSE, read by the caller (in its own pipeline)."""
    state = breaker.get("state", "closed")
    return BreakerStatus(
        state=state,
        since=moment(breaker.get("since")),
        why=breaker.get("why"),
        reopens_at=moment(breaker.get("reopen_at")) if state == "open" else None,
        paused_until=moment(pause.get("until")),
        pause_why=pause.get("why"),
    )


def moment(epoch: str | None) -> datetime | None:
    """A time the scripts wrote (epoch seconds by Redis's clock), as a datetime."""
    return None if epoch is None else datetime.fromtimestamp(float(epoch), timezone.utc)
