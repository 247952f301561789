from __future__ import annotations

import pytest

from messaging import delivery
from messaging.logs import Throttle, fields
from messaging.queries import QUERIES, parse


def test_queries_are_parsed_by_name_without_their_comments():
    parsed = parse("-- name: one\n-- says what\nSELECT 1;\n\n-- name: two\nSELECT %(x)s;\n")
    assert parsed == {"one": "SELECT 1", "two": "SELECT %(x)s"}


def test_every_query_binds_parameters_and_never_formats_them():
    for statement in QUERIES.values():
        assert "{" not in statement and "%s" not in statement


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 10, 60])
def test_backoff_grows_exponentially_with_jitter_under_the_cap(attempt):
    ceiling = min(600, 10 * 2 ** (attempt - 1))
    delays = [delivery.retry_delay(attempt, 10, 600) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


def test_retry_after_is_honoured_within_the_cap():
    assert delivery.retry_delay(1, 10, 600, retry_after=42) == 42
    assert delivery.retry_delay(1, 10, 600, retry_after=3600) == 600


def test_log_fields_quote_spaces_and_leave_out_nones():
    assert fields(a=1, b="two words", c=None) == 'a=1 b="two words"'


def test_a_throttle_lets_one_message_per_key_through_per_interval():
    throttle = Throttle(seconds=60)
    assert throttle.allow("redis") and not throttle.allow("redis")
    assert throttle.allow("postgresql")
