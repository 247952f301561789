"""kombu's URL form for Redis behind Sentinels, `sentinel://h1:26379/0;sentinel://h2:26380/0`: one URL per Sentinel."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_SENTINEL_MASTER = "mymaster"


@dataclass(frozen=True)
class Sentinels:
    """What a `sentinel://...;sentinel://...` URL names: the Sentinels, the db, the master's credentials."""

    addresses: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None


def uses_sentinels(url: str) -> bool:
    return url.startswith(f"{SENTINEL_SCHEME}:")


def sentinels(url: str) -> Sentinels:
    """Parse kombu's Sentinel form; ValueError says what is wrong. Every part names one Sentinel,
    the same db (`/0` if none) and the same credentials (those of the Redis master, as in kombu)."""
    found = []
    for part in url.split(";"):
        parts = urlsplit(part.strip())
        if parts.scheme != SENTINEL_SCHEME:
            raise ValueError(f"must be {SENTINEL_SCHEME}:// URLs separated by semicolons")
        try:
            port = parts.port or DEFAULT_SENTINEL_PORT
            db = int(parts.path.strip("/") or 0)
        except ValueError:
            raise ValueError("each Sentinel needs a numeric port and db") from None
        if not parts.hostname:
            raise ValueError("each Sentinel must name a host")
        found.append(((parts.hostname, port), db, parts.username or None, parts.password))
    if len({(db, user, password) for _, db, user, password in found}) > 1:
        raise ValueError("every Sentinel must name the same db and credentials")
    _, db, username, password = found[0]
    return Sentinels(tuple(address for address, *_ in found), db, username, password)
