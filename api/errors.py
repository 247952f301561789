"""Every error becomes `{"error": {"code", "message", "fields"}}`: mapped here, in one place."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from api import MAX_BODY_BYTES, seed
from api.parser import BODY
from messaging.errors import (
    CrossSiteRequest,
    DependencyUnavailable,
    HostNotAllowed,
    InvalidMessage,
    MessageNotCancelable,
    MessageNotFound,
    MessageNotRetryable,
    MessagingError,
    ReceiptNotSigned,
    ReceiptsOff,
    StopNotReplicated,
)

log = logging.getLogger(__name__)

# Clearer than werkzeug's stock descriptions, for the statuses a client meets most.
MESSAGES = {
    404: "No such path.",
    405: "Method not allowed here; the Allow header lists those that are.",
    413: f"Request body over {MAX_BODY_BYTES // 1024} KiB.",
}

DOMAIN_ERRORS: dict[type[MessagingError], tuple[int, str]] = {
    MessageNotFound: (404, "not_found"),
    MessageNotRetryable: (409, "conflict"),
    MessageNotCancelable: (409, "conflict"),
    InvalidMessage: (422, "validation_error"),
    DependencyUnavailable: (503, "unavailable"),
    StopNotReplicated: (503, "stop_not_replicated"),
    HostNotAllowed: (400, "host_not_allowed"),
    CrossSiteRequest: (403, "forbidden"),
    ReceiptsOff: (404, "not_found"),
    ReceiptNotSigned: (401, "unauthorized"),
}


def error_response(status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None):
    if seed.wanted():  # GET /messaging/sent answering as the Go service did
        body = seed.error_body(message, fields)
    else:
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
    message = MESSAGES.get(error.code, error.description or error.name)
    # Keep headers the error carries for the client, such as Allow on a 405.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    return error_response(error.code or 500, code, message, headers=headers)


def _validation_response(status: int, messages: dict, headers: dict | None):
    """webargs reports errors per location ({"query": {...}}); clients want the fields."""
    fields: dict = {}
    for location, errors in messages.items():
        if not isinstance(errors, dict):
            fields[location] = errors
            continue
        for name, problems in errors.items():
            # marshmallow's "_schema" is about the whole input: for a body, call it that.
            fields[BODY if name == "_schema" and location == "json" else name] = problems
    where = "query parameters" if "query" in messages else "request body"
    return error_response(status, "validation_error", f"Invalid {where}.", fields, headers)


def handle_validation_error(error: ValidationError):
    messages = error.messages if isinstance(error.messages, dict) else {BODY: error.messages}
    return error_response(422, "validation_error", "Invalid request body.", messages)


def handle_messaging_error(error: MessagingError):
    for kind, (status, code) in DOMAIN_ERRORS.items():
        if isinstance(error, kind):
            if status >= 500:
                log.warning("event=request_failed %s", error)
            if isinstance(error, InvalidMessage):
                return error_response(status, code, "Invalid request body.", error.fields)
            if isinstance(error, DependencyUnavailable):
                # The driver's words name hosts, ports and users: the log has them, not the answer.
                return error_response(status, code, f"{error.dependency} is unavailable.")
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
