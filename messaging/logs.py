"""One line per event, `key=value` pairs, and a way to say an outage once per interval, not per call."""

from __future__ import annotations

import logging
import threading
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure(level: str = "INFO") -> None:
    """Plain line logging for processes we start ourselves (Celery configures its own)."""
    logging.basicConfig(level=level, format=FORMAT)


def fields(**values: object) -> str:
    """`a=1 b=two`; None values are left out, values with spaces quoted, so a line stays parseable."""
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace('"', "'") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


class Throttle:
    """Lets a message through once per `seconds` for each key: an outage logs its cause, not a flood."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.seconds:
                return False
            self._last[key] = now
            return True
