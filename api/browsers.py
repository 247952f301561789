"""What a browser may do: send a Host this API answers to, and call /messaging/* only from its own pages.

A page of another site can make a browser POST here without a CORS preflight (stop sending,
retry failed messages) and, through DNS rebinding, read the answers under a name of its own.
Browsers say where a request comes from (`Origin`, `Sec-Fetch-Site`) and under which name
(`Host`); clients that are not browsers (curl, the Go service's clients) send neither of the
first two, so they are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request

from api import auth, settings
from messaging.errors import CrossSiteRequest, HostNotAllowed
from messaging.settings import ANY_HOST, host_name

# Sec-Fetch-Site values of a request the user made on this API's own pages, or typed in.
OWN_SITE = ("same-origin", "none")
DEFAULT_PORTS = {"http": 80, "https": 443}


def check_host() -> None:
    """An app-wide before_request hook: a Host outside ALLOWED_HOSTS answers 400, on every path."""
    allowed = settings().allowed_hosts
    if ANY_HOST in allowed or "HTTP_HOST" not in request.environ:  # no Host at all: HTTP/1.0, never a browser
        return
    # werkzeug gives "" for a Host with characters no host name has.
    if not request.host or host_name(request.host) not in allowed:
        raise HostNotAllowed("The Host header names no host this API answers to (ALLOWED_HOSTS).")


def check_origin() -> None:
    """An app-wide before_request hook: a /messaging call from a page of another origin answers 403."""
    if not auth.protected(request.path):
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in OWN_SITE:
        raise CrossSiteRequest()
    origin = request.headers.get("Origin")
    if origin is not None and _origin(origin) != _origin(f"{request.scheme}://{request.host}"):
        raise CrossSiteRequest()


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the scheme's default port filled in; None for "null" or anything unparsable."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None or parts.path or parts.query:
        return None
    return parts.scheme.lower(), parts.hostname, port
