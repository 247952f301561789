"""One line per event, `key=value` pairs, and a way to say an outage once per interval, not per call."""

from __future__ import annotations

import logging
import threading
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# A value holding one of these is quoted.
QUOTED = frozenset(" \"'=\\")


def configure(level: str = "INFO") -> None:
    """Plain line logging for processes we start ourselves (Celery configures its own)."""
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ONE_LINE)


def fields(**values: object) -> str:
    """`a=1 b="two words"`; None values are left out. Values are escaped (see `escape`) and quoted
    when they hold a space, a quote, `=` or a backslash, so a line stays one parseable line."""
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        text = escape(str(value))
        if not text or any(c in text for c in QUOTED):
            text = '"' + text.replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def escape(text: str) -> str:
    """`text` with a backslash escape (as Python writes them) for the backslash and for every character
    that is not printable: line breaks, NUL, ESC, C1 and bidi controls. What a log reader could act
    on becomes visible text, and the original reads back with `unicode_escape`."""
    if text.isprintable() and "\\" not in text:
        return text  # the usual case, at the cost of two scans in C
    return text.translate(_ESCAPES)


class _Escapes:
    """The `str.translate` table of `escape`: computed per character, so that no input can grow it."""

    def __getitem__(self, code: int) -> str:
        char = chr(code)
        if char == "\\":
            return "\\\\"
        if char.isprintable():
            raise LookupError(code)  # translate leaves it as it is
        return repr(char)[1:-1]  # as Python writes it: \n, \x00, \u202e


_ESCAPES = _Escapes()


class OneLine(logging.Filter):
    """Escapes a record's message when it holds a character that is not printable: one record, one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.isprintable():
            record.msg, record.args = escape(message), None
        return True


ONE_LINE = OneLine()


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
