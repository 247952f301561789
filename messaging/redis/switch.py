"""The on/off switch for sending, shared by every process through Redis."""

from __future__ import annotations

import logging

import redis

from messaging import timeouts
from messaging.errors import StopNotReplicated
from messaging.redis import keys
from messaging.redis.client import wrap_errors

log = logging.getLogger(__name__)


class Switch:
    """Sending on or off; before anyone touched it, AUTO_START decides.

    With a `replicated` Redis (Sentinels), a stop waits until a replica holds it: replication is
    asynchronous, and a stop lost in a failover would leave the key unset, which AUTO_START may
    read as on (StopNotReplicated says when no replica took it). A start needs no such wait: losing one only leaves sending stopped.
    """

    def __init__(self, client: redis.Redis, auto_start: bool, *, replicated: bool = False) -> None:
        self.client = client
        self.auto_start = auto_start
        self.replicated = replicated

    def is_enabled(self) -> bool:
        with wrap_errors():
            return self.read(self.client.get(keys.ENABLED))

    def read(self, value: str | None) -> bool:
        """What the switch's raw value (read by the caller, with other keys) says."""
        return self.auto_start if value is None else value == "1"

    def set_enabled(self, enabled: bool) -> None:
        with wrap_errors():
            self.client.set(keys.ENABLED, "1" if enabled else "0")
            if not enabled and self.replicated:
                self._wait_for_a_replica()

    def _wait_for_a_replica(self) -> None:
        """WAIT until one replica acknowledged the stop, at most SWITCH_REPLICA_WAIT_MS; else StopNotReplicated.

        Sentinel promotes the replica with the most of the master's data, so one that holds the stop
        keeps it through a failover. Without one the stop still holds on the master: the caller is
        told it may not survive a failover, and calls again.
        """
        if self.client.wait(1, timeouts.SWITCH_REPLICA_WAIT_MS) < 1:
            log.warning("event=stop_not_replicated waited_ms=%d", timeouts.SWITCH_REPLICA_WAIT_MS)
            raise StopNotReplicated()

    def switch_on(self) -> bool:
        """Turn sending on; True only for the one caller that found it off, however many call at once."""
        with wrap_errors():
            before = self.client.set(keys.ENABLED, "1", get=True)  # SET ... GET: one atomic step in Redis
        return not self.read(before)
