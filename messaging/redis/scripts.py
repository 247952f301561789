"""Lua scripts, read from the `.lua` files beside this module (named blocks, like queries.sql).

A script is registered from several blocks joined, so the helpers they share are written once.
Registering only hashes the text: nothing reaches Redis until a script first runs.
"""

from __future__ import annotations

import redis
from redis.commands.core import Script

from messaging import blocks


def register(client: redis.Redis, filename: str, *names: str) -> Script:
    """The script made of the blocks `names` of `filename`, in that order, for `client`."""
    found = blocks.load(__package__, filename)
    return client.register_script("\n".join(found[name] for name in names))
