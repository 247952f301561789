"""Whatever a provider sends back is parsed without failing the task: property-based."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from messaging.provider.answers import (
    MAX_MESSAGE_ID,
    message_id_of,
    printable,
    retry_after_seconds,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
# Header values as a client sees them: latin-1 decoded bytes, any of them.
HEADER_TEXT = st.binary(max_size=64).map(lambda raw: raw.decode("latin-1")) | st.text(max_size=64)


@settings(max_examples=2000)
@given(HEADER_TEXT)
@example("²")
@example("٣")
@example("99999999999999999999")
@example("Mon, 32 Dec 9999 99:99:99 GMT")
@example("Sun, 06 Nov 1994 08:49:37 GMT")
@example("Fri, 31 Dec 9999 23:59:59 +2359")
@example("0, 1 Jan 0001 00:00:00 -2359")
def test_any_retry_after_value_gives_seconds_or_nothing(value):
    seconds = retry_after_seconds(value, now=NOW)
    assert seconds is None or (isinstance(seconds, float) and seconds >= 0)


def test_retry_after_reads_both_forms():
    assert retry_after_seconds(" 120 ", now=NOW) == 120
    assert retry_after_seconds("Sun, 29 Nov 2026 12:01:30 GMT", now=NOW) == 90
    assert retry_after_seconds("Sun, 29 Nov 2026 11:00:00 GMT", now=NOW) == 0
    assert retry_after_seconds("²", now=NOW) is None
    assert retry_after_seconds("1.5", now=NOW) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=1000)
@given(st.binary(max_size=300))
@example(b"[" * 100_000)
@example(b'{"messageId": 1' + b"0" * 5000 + b"}")
@example(b'{"messageId": "\\u0000\\ud800\\n\\u001b[31m"}')
@example(b'{"messageId": true}')
@example(b"\xff\xfe")
def test_any_answer_body_gives_a_clean_message_id_or_nothing(body):
    assert_clean(message_id_of(body))


@settings(max_examples=1000)
@given(st.fixed_dictionaries({"messageId": JSON}, optional={"message": JSON}))
def test_any_json_message_id_gives_a_clean_one_or_nothing(answer):
    assert_clean(message_id_of(json.dumps(answer).encode()))


def assert_clean(message_id: str | None) -> None:
    if message_id is None:
        return
    assert 0 < len(message_id) <= MAX_MESSAGE_ID
    assert message_id.isprintable(), "storable in PostgreSQL and safe in a log line"
    message_id.encode("utf-8")


@given(st.text(), st.sampled_from(["", "\n\t"]))
def test_printable_text_is_storable_and_keeps_what_was_printable(text, keep):
    cleaned = printable(text, keep)
    assert len(cleaned) == len(text)
    assert all(c.isprintable() or c in keep for c in cleaned)
    assert all(c == "\ufffd" for c, original in zip(cleaned, text) if c != original)
    cleaned.encode("utf-8")
