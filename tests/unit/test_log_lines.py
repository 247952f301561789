"""Log lines stay one parseable line whatever text reaches them (paths, headers, a provider's answer)."""

from __future__ import annotations

import shlex
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from messaging.logs import Throttle, escape, fields

KEYS = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
VALUES = st.one_of(st.none(), st.text(), st.integers(), st.floats(), st.binary())


def raw_controls(line: str) -> list[str]:
    """Characters a terminal or a log reader acts on: line breaks, NUL, ESC, C1, bidi and other format marks."""
    return [c for c in line if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")]


@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_any_values_give_one_line_without_control_characters_parsed_back_to_the_same_keys(values):
    line = fields(**values)

    assert len(line.splitlines()) <= 1 and "\r" not in line and "\n" not in line
    assert raw_controls(line) == []
    pairs = [token.split("=", 1) for token in shlex.split(line)]
    assert [key for key, _ in pairs] == [key for key, value in values.items() if value is not None]


@given(st.text())
def test_escaping_changes_only_what_is_not_printable_and_the_backslash(text):
    escaped = escape(text)

    assert raw_controls(escaped) == []
    assert escaped.encode("ascii", "backslashreplace").decode("unicode_escape") == text


def test_a_forged_line_stays_inside_its_field():
    line = fields(message_id="x\nevent=delivery outcome=sent", reason='a "quoted"\x00\x1b[31m\u202ered')

    assert line == (
        r'message_id="x\nevent=delivery outcome=sent" reason="a \"quoted\"\x00\x1b[31m\u202ered"'
    )
    assert [pair.split("=", 1)[0] for pair in shlex.split(line)] == ["message_id", "reason"]


def test_plain_text_of_any_script_is_left_as_it_is():
    assert fields(a=1, b="two words", c=None, d="İstanbul çğüşö ✓") == 'a=1 b="two words" d="İstanbul çğüşö ✓"'


def test_log_fields_quote_spaces_and_leave_out_nones():
    assert fields(a=1, b="two words", c=None) == 'a=1 b="two words"'


def test_a_throttle_lets_one_message_per_key_through_per_interval():
    throttle = Throttle(seconds=60)
    assert throttle.allow("redis") and not throttle.allow("redis")
    assert throttle.allow("postgresql")
