"""Secrets where they may be read (a repr, an error message): masked, their value never shown."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "***"


def without_password(url: str) -> str:
    """The URL with any password masked: in its user part, or as libpq's `password=` parameter.
    Several URLs separated by semicolons (kombu's Sentinel form) are masked each."""
    if ";" in url:
        return ";".join(without_password(part) for part in url.split(";"))
    parts = urlsplit(url)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", f":{MASK}@"))
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "password" for key, _ in query):
        masked = [(key, MASK if key == "password" else value) for key, value in query]
        parts = parts._replace(query=urlencode(masked, safe="*"))
    return parts.geturl()
