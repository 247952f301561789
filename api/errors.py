"""Every error becomes `{"error": {"code", "message", "fields"}}`: mapped here, in one place."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from messaging.errors import DependencyUnavailable, MessageNotFound, MessageNotRetryable, MessagingError

log = logging.getLogger(__name__)

DOMAIN_ERRORS: dict[type[MessagingError], tuple[int, str]] = {
    MessageNotFound: (404, "not_found"),
    MessageNotRetryable: (409, "conflict"),
    DependencyUnavailable: (503, "unavailable"),
}


def error_response(status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None):
    body = {"error": {"code": code, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def handle_http_exception(error: HTTPException):
    data = getattr(error, "data", None) or {}
    messages = data.get("messages") or data.get("errors")
    if messages:
        return _validation_response(error.code or 400, messages, data.get("headers"))
    code = (error.name or "error").lower().replace(" ", "_")
    # Keep headers the error carries for the client, such as Allow on a 405.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    return error_response(error.code or 500, code, error.description or error.name, headers=headers)


def _validation_response(status: int, messages: dict, headers: dict | None):
    """webargs reports errors per location ({"query": {...}}); clients want the fields."""
    fields: dict = {}
    for location, errors in messages.items():
        if isinstance(errors, dict):
            fields.update(errors)
        else:
            fields[location] = errors
    if "json" in messages and status == 400:
        # Malformed JSON is a body that cannot be processed, like any other invalid body.
        status = 422
    where = "query parameters" if "query" in messages else "request body"
    return error_response(status, "validation_error", f"Invalid {where}.", fields, headers)


def handle_validation_error(error: ValidationError):
    messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
    return error_response(422, "validation_error", "Invalid request body.", messages)


def handle_messaging_error(error: MessagingError):
    for kind, (status, code) in DOMAIN_ERRORS.items():
        if isinstance(error, kind):
            if status >= 500:
                log.warning("event=request_failed %s", error)
            return error_response(status, code, str(error))
    log.error("event=request_failed unmapped domain error: %s", error)
    return error_response(500, "internal_error", "Internal error.")


def handle_unexpected(error: Exception):
    log.exception("event=request_failed unexpected error")
    return error_response(500, "internal_error", "Internal error.")


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(ValidationError, handle_validation_error)
    app.register_error_handler(MessagingError, handle_messaging_error)
    app.register_error_handler(Exception, handle_unexpected)
