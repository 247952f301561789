"""Typed reads of environment variables for the settings: numbers in range, booleans, choices, URLs,
header values; each failure a SettingsError naming its variable, never showing a password."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from messaging.errors import SettingsError
from messaging.masking import without_password
from messaging.sentinel_urls import SENTINEL_SCHEME, sentinels, uses_sentinels

T = TypeVar("T")

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
# What a header may carry once it leaves here: visible ASCII, and spaces or tabs between words.
# A newline from a secret file would otherwise fail every request that sends it.
HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")


class Environment:
    """Typed reads of environment variables; each failure names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self._environ.get(name, default)

    def header_value(self, name: str) -> str:
        """A value sent in an HTTP header: empty, or visible ASCII with no surrounding whitespace."""
        raw = self._environ.get(name, "")
        if raw and not HEADER_VALUE.fullmatch(raw):
            raise SettingsError(
                name,
                "must be printable ASCII, without line breaks or spaces at either end "
                "(a secret file's trailing newline?); it is sent in an HTTP header",
            )
        return raw

    def number(self, name: str, default: T, kind: Callable[[str], T], *, low: float, high: float) -> T:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value: Any = kind(raw)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise SettingsError(name, f"must be {noun}, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(name, f"must be between {low:g} and {high:g}, got {raw}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() in TRUE_WORDS:
            return True
        if raw.lower() in FALSE_WORDS:
            return False
        raise SettingsError(name, f"must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise SettingsError(name, f"must be one of {', '.join(choices)}, got {raw!r}")

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        if SENTINEL_SCHEME in schemes and (";" in raw or uses_sentinels(raw)):
            try:
                sentinels(raw)
            except ValueError as error:
                raise SettingsError(name, f"{error}, got {without_password(raw)!r}") from None
            return raw
        parts = urlsplit(raw)
        scheme = parts.scheme.split("+")[0]
        if scheme not in schemes:
            raise SettingsError(name, f"must be a URL with scheme {' or '.join(schemes)}, got {without_password(raw)!r}")
        if scheme != "unix" and not parts.hostname:
            raise SettingsError(name, f"must name a host, got {without_password(raw)!r}")
        return raw
