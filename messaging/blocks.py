"""Named blocks of SQL or Lua, read once from a file of the package: `-- name: <name>` opens each.

Both languages start a comment with `--`, so one reader serves `queries.sql` and the `.lua`
scripts. A block's own comment lines (its description) are dropped; a block may include
another, written earlier in the file, with a line `-- include: <name>`.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME_LINE = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)
_INCLUDE_LINE = re.compile(r"^-- include: (\w+)$")


def parse(text: str) -> dict[str, str]:
    """Split a text into {name: block}, dropping each block's comment lines and a final `;`."""
    parts = _NAME_LINE.split(text)[1:]
    blocks: dict[str, str] = {}
    for name, body in zip(parts[::2], parts[1::2]):
        lines = []
        for line in body.splitlines():
            included = _INCLUDE_LINE.match(line)
            if included:
                lines.append(blocks[included.group(1)])
            elif not line.startswith("--"):
                lines.append(line)
        blocks[name] = "\n".join(lines).strip().rstrip(";")
    return blocks


@functools.cache
def load(package: str, filename: str) -> dict[str, str]:
    """The named blocks of `filename`, a file shipped inside `package`."""
    return parse(resources.files(package).joinpath(filename).read_text())
