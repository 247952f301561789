"""The on/off switch for sending, shared by every process through Redis."""

from __future__ import annotations

import redis

from messaging.redis import keys
from messaging.redis.client import wrap_errors


class Switch:
    """Sending on or off; before anyone touched it, AUTO_START decides."""

    def __init__(self, client: redis.Redis, auto_start: bool) -> None:
        self.client = client
        self.auto_start = auto_start

    def is_enabled(self) -> bool:
        with wrap_errors():
            return self.read(self.client.get(keys.ENABLED))

    def read(self, value: str | None) -> bool:
        """What the switch's raw value (read by the caller, with other keys) says."""
        return self.auto_start if value is None else value == "1"

    def set_enabled(self, enabled: bool) -> None:
        with wrap_errors():
            self.client.set(keys.ENABLED, "1" if enabled else "0")

    def switch_on(self) -> bool:
        """Turn sending on; True only for the one caller that found it off, however many call at once."""
        with wrap_errors():
            before = self.client.set(keys.ENABLED, "1", get=True)  # SET ... GET: one atomic step in Redis
        return not self.read(before)
