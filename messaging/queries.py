"""Named SQL queries, read once from queries.sql (`-- name: <name>` blocks)."""

from __future__ import annotations

import re
from importlib import resources

_NAME_LINE = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a .sql text into {name: statement}, dropping each block's comment lines."""
    parts = _NAME_LINE.split(text)[1:]
    queries = {}
    for name, body in zip(parts[::2], parts[1::2]):
        statement = "\n".join(line for line in body.splitlines() if not line.startswith("--"))
        queries[name] = statement.strip().rstrip(";")
    return queries


QUERIES: dict[str, str] = parse(resources.files("messaging").joinpath("queries.sql").read_text())
