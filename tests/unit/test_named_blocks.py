"""The named blocks of SQL and Lua: read by name, comments dropped, shared parts included once."""

from __future__ import annotations

from messaging import blocks
from messaging.postgres.queries import QUERIES


def test_blocks_are_parsed_by_name_without_their_comments():
    parsed = blocks.parse("-- name: one\n-- says what\nSELECT 1;\n\n-- name: two\nSELECT %(x)s;\n")
    assert parsed == {"one": "SELECT 1", "two": "SELECT %(x)s"}


def test_a_block_includes_an_earlier_one_where_it_says_so():
    parsed = blocks.parse("-- name: columns\na, b\n\n-- name: query\nSELECT\n-- include: columns\nFROM t;\n")
    assert parsed["query"] == "SELECT\na, b\nFROM t"


def test_every_query_binds_parameters_and_never_formats_them():
    for statement in QUERIES.values():
        assert "{" not in statement and "%s" not in statement and "-- include" not in statement


def test_every_query_that_returns_messages_names_the_columns_once():
    """The column list lives in one block; queries read it from there, never spell it again."""
    spelled = [name for name, statement in QUERIES.items() if name != "message_columns" and "last_error, created_at" in statement]
    including = [name for name, statement in QUERIES.items() if QUERIES["message_columns"] in statement]
    assert set(spelled) <= set(including)
    assert len(including) >= 8


def test_every_lua_script_block_is_found_in_its_file():
    flow = blocks.load("messaging.redis", "flow.lua")
    assert {"prelude", "open_and_close", "admit", "record", "slot", "pause", "close_by_hand", "claimable"} <= set(flow)
    assert "local function now_seconds()" in flow["prelude"]
    assert "claim_period" in blocks.load("messaging.redis", "remembered.lua")
