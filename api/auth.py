"""Bearer-token check for /messaging/*: on only when API_TOKEN is set."""

from __future__ import annotations

import hmac
import logging

from flask import request

from api import settings
from api.errors import error_response
from messaging.errors import SettingsError
from messaging.settings import Settings

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/messaging"
# The provider's delivery receipts carry a Standard Webhooks signature instead (api/receipts.py).
SIGNED_NOT_TOKEN = ("/messaging/receipts",)


def require_token():
    """An app-wide before_request hook: None lets the request through, a response stops it.

    It runs before routing errors are raised, so an unknown path or a wrong method under
    /messaging/ answers 401 too without a token, and reveals nothing about the API.
    """
    if not settings().api_token or not protected(request.path) or request.path in SIGNED_NOT_TOKEN or has_the_token():
        return None
    return error_response(
        401,
        "unauthorized",
        "Missing or wrong bearer token: send Authorization: Bearer <API_TOKEN>.",
        headers={"WWW-Authenticate": 'Bearer realm="messaging"'},
    )


def has_the_token() -> bool:
    """Whether the request carries API_TOKEN as its bearer token (never, while API_TOKEN is empty)."""
    expected = settings().api_token
    # Constant-time comparison: timing does not reveal how much of a guess was right.
    return bool(expected) and hmac.compare_digest(_header_bytes(_bearer_token()), expected.encode())


def protected(path: str) -> bool:
    """Whether the path is one of the /messaging calls (they need the token when API_TOKEN is set)."""
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


def _bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    # The scheme is case-insensitive (RFC 9110 section 11.1).
    return token.strip() if scheme.lower() == "bearer" else ""


def _header_bytes(text: str) -> bytes:
    """The bytes the client sent: WSGI servers decode header values as latin-1."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def check_access(config: Settings) -> None:
    """API_AUTH against API_TOKEN: a SettingsError where they disagree.

    Checked where the API starts (create_app, gunicorn's on_starting), not in
    Settings.from_env: the workers read the same settings without being given API_TOKEN.
    """
    if config.api_auth == "token" and not config.api_token:
        raise SettingsError(
            "API_TOKEN",
            "must be set (32 characters or more) while API_AUTH=token, or set API_AUTH=off to serve the API without a token",
        )
    if config.api_auth == "off" and config.api_token:
        raise SettingsError("API_AUTH", "is off while API_TOKEN is set: unset API_TOKEN, or API_AUTH to require it")


def warn_if_open(config: Settings) -> None:
    """One warning at start while API_TOKEN is empty: the API then answers anyone who reaches it."""
    if not config.api_token:
        log.warning(
            "event=api_token_unset API_TOKEN is empty: every /messaging call is open to anyone who can "
            "reach this port. Set API_TOKEN to require Authorization: Bearer <API_TOKEN>."
        )
