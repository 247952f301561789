"""Bearer-token check for /messaging/*: on only when API_TOKEN is set."""

from __future__ import annotations

import hmac

from flask import request

from api import settings
from api.errors import error_response

BEARER = "Bearer "


def require_token():
    """A before_request hook: None lets the request through, a response stops it."""
    expected = settings().api_token
    if not expected:
        return None
    header = request.headers.get("Authorization", "")
    given = header[len(BEARER):] if header.startswith(BEARER) else ""
    # Constant-time comparison: timing does not reveal how much of a guess was right.
    if hmac.compare_digest(given.encode(), expected.encode()):
        return None
    return error_response(
        401,
        "unauthorized",
        "Missing or wrong bearer token.",
        headers={"WWW-Authenticate": 'Bearer realm="messaging"'},
    )
