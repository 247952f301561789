"""Marshmallow fields for this API: strict about what they take, exact about what the document says."""

from __future__ import annotations

import re
from datetime import datetime

from marshmallow import ValidationError, fields, validate

from messaging.domain.message import Status
from messaging.domain.public import utc_iso

# PostgreSQL text cannot hold NUL; written for both Python and ECMA-262 (the document's regex dialect).
NO_NUL = r"^[^\u0000]*$"
QUERY_INTEGER = re.compile(r"-?[0-9]{1,19}")


class FullMatch(validate.Regexp):
    """A Regexp that must match the whole value: `$` in `re.match` also matches before a final newline."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Text(fields.String):
    """A string PostgreSQL can store: valid Unicode (no lone surrogates from `\\ud800` escapes), no NUL."""

    def __init__(self, **kwargs):
        validators = list(kwargs.pop("validate", []))
        if not any(isinstance(validator, validate.Regexp) for validator in validators):
            # A pattern of its own (E.164) already excludes NUL; the document shows one pattern per field.
            validators.append(FullMatch(NO_NUL, error="Must not contain NUL characters."))
        super().__init__(validate=validators, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("Must be valid Unicode text (no unpaired surrogates).") from None
        return text


class QueryInteger(fields.Integer):
    """An integer written in ASCII digits: not `1.0`, ` 5`, `1_0`, `١` or 5,000 digits, which `int()` takes."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not QUERY_INTEGER.fullmatch(value):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class JsonBoolean(fields.Boolean):
    """true or false, not the 1, "yes" or "on" marshmallow also takes."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class ZonedDateTime(fields.AwareDateTime):
    """ISO 8601 with a time zone, read as given; anything else gets one message that says how to write it."""

    ERROR = "Must be an ISO 8601 date and time with a time zone, such as 2026-12-01T09:00:00+03:00."

    def __init__(self, **kwargs):
        super().__init__(format="iso", error_messages={"invalid": self.ERROR, "invalid_awareness": self.ERROR}, **kwargs)


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC, whatever the database session's time zone."""

    def _serialize(self, value, attr, obj, **kwargs):
        return utc_iso(value) if isinstance(value, datetime) else super()._serialize(value, attr, obj, **kwargs)


class StatusField(fields.String):
    """A message's status by name (the values come from messaging/domain/public.py)."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.OneOf([status.label for status in Status]), **kwargs)
