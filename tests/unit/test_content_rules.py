"""The rules a new message meets before it is stored: recipient, content, and a send time in the window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from messaging.domain.content import BLANK, problems_with

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("content", [" ", "   ", "\n\t", "\u2003\u00a0"], ids=["space", "spaces", "newline-tab", "em-nbsp"])
def test_whitespace_only_content_is_refused(content):
    assert problems_with(content, None, NOW) == {"content": [BLANK]}


@pytest.mark.parametrize("content", ["x", " x ", "\u200b", "😀"])
def test_content_with_anything_else_is_taken(content):
    assert problems_with(content, None, NOW) == {}


@pytest.mark.parametrize(
    "send_at",
    [NOW, NOW - timedelta(seconds=59), NOW + timedelta(minutes=15), NOW + timedelta(days=35),
     datetime(2026, 11, 29, 15, 0, tzinfo=timezone(timedelta(hours=3)))],
    ids=["now", "skew", "15-min", "35-days", "other-zone"],
)  # fmt: skip
def test_a_send_time_from_now_to_35_days_ahead_is_taken(send_at):
    assert problems_with("hi", send_at, NOW) == {}


@pytest.mark.parametrize(
    ("send_at", "says"),
    [
        (NOW - timedelta(minutes=2), "Must not be in the past."),
        (NOW + timedelta(days=35, seconds=1), "Must be at most 35 days ahead."),
        (datetime(2026, 11, 30, 9, 0), "Must have a time zone, such as Z or +03:00."),
    ],
    ids=["past", "too-far", "no-zone"],
)
def test_a_send_time_outside_the_window_is_refused(send_at, says):
    assert problems_with("hi", send_at, NOW) == {"send_at": [says]}


def test_both_problems_are_named_at_once():
    assert set(problems_with(" ", NOW - timedelta(days=1), NOW)) == {"content", "send_at"}


@pytest.mark.parametrize("content", ["", "x" * 161, "a\x00b"], ids=["empty", "161", "nul"])
def test_content_too_long_empty_or_holding_nul_is_refused(content):
    assert set(problems_with(content, None, NOW)) == {"content"}


@pytest.mark.parametrize("recipient", ["905321234567", "+0532123456", "+1234567", "+1234567890123456", "+90532\n"])
def test_a_recipient_that_is_not_e164_is_refused(recipient):
    assert set(problems_with("hi", None, NOW, recipient=recipient)) == {"recipient_phone_number"}
