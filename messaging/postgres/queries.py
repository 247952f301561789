"""Named SQL queries, read once from queries.sql (`-- name: <name>` blocks)."""

from __future__ import annotations

from messaging import blocks

QUERIES: dict[str, str] = blocks.load(__package__, "queries.sql")
