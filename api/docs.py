"""The OpenAPI document's extras, and Swagger UI served from the swagger-ui-bundle package (no CDN)."""

from __future__ import annotations

from flask import Blueprint, Flask, send_from_directory
from flask_smorest import Api
from swagger_ui_bundle import swagger_ui_path

from api.examples import EXAMPLE_CONTENT, EXAMPLE_ID, EXAMPLE_PHONE, EXAMPLE_SEND_AT
from api.fields import ZonedDateTime
from api.schemas import ApiErrorSchema
from messaging.errors import CrossSiteRequest

ASSETS_URL = "/docs/assets/"
BEARER = [{"bearerAuth": []}]

DESCRIPTION = """\
Outbound messaging: messages stored in PostgreSQL are sent to a webhook by Celery
workers, a batch every `SEND_INTERVAL_SECONDS` while sending is enabled.

**Authentication.** When the server has `API_TOKEN` set, every `/messaging/*` call needs
`Authorization: Bearer <API_TOKEN>`, else 401. `/health`, `/ready`, `/metrics`, `/docs`
and `/openapi.json` are always open. Without `API_TOKEN` the whole API is open.

**Browsers.** A `/messaging/*` call from a page of another origin (its `Origin`, or
`Sec-Fetch-Site` other than `same-origin` or `none`) answers 403; a `Host` outside the
server's `ALLOWED_HOSTS` answers 400 on every path. Clients that are not browsers send
neither header and are not affected.

**Errors.** Every error answer is JSON: `{"error": {"code", "message", "fields"}}`, with
`fields` (per-field messages) on validation errors only. An unknown path answers 404, a
method a path does not support 405 (with `Allow`), a request body over 64 KiB 413, and
PostgreSQL or Redis being unreachable 503 naming which.

**Pagination.** `/messaging/sent` and `/messaging/failed` take `limit` and `offset`, or a
`cursor`: `pagination.next_cursor` of the previous page. A cursor page costs the same at
any depth; an offset page costs more the deeper it is, and `offset` goes to 10,000.
"""

SPEC_KWARGS = {
    "info": {"description": DESCRIPTION},
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "The server's API_TOKEN."}
        }
    },
}


def error_example(code: str, message: str, fields: dict | None = None) -> dict:
    body = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


ERROR_RESPONSES = {
    400: {
        "description": "Invalid query parameters, with per-field messages.",
        "example": error_example(
            "validation_error",
            "Invalid query parameters.",
            {"limit": ["Must be greater than or equal to 1 and less than or equal to 100."]},
        ),
    },
    401: {
        "description": "Missing or wrong bearer token (only when the server has API_TOKEN set).",
        "example": error_example("unauthorized", "Missing or wrong bearer token: send Authorization: Bearer <API_TOKEN>."),
        "headers": {
            "WWW-Authenticate": {
                "description": "The scheme to use.",
                "schema": {"type": "string", "example": 'Bearer realm="messaging"'},
            }
        },
    },
    403: {
        "description": (
            "Sent by a page of another origin (its Origin header or Sec-Fetch-Site says so): only the API's "
            "own pages, and clients that are not browsers, may call /messaging/*."
        ),
        "example": error_example("forbidden", CrossSiteRequest.__doc__),
    },
    404: {
        "description": "No message with that id (also for an id that is not a UUID).",
        "example": error_example("not_found", f"No message with id {EXAMPLE_ID}."),
    },
    409: {
        "description": "The message is not failed, so it cannot be retried.",
        "example": error_example("conflict", f"Message {EXAMPLE_ID} is sent; only a failed message can be retried."),
    },
    413: {
        "description": "Request body over 64 KiB.",
        "example": error_example("request_entity_too_large", "Request body over 64 KiB."),
    },
    422: {
        "description": (
            "Invalid body, with per-field messages: a missing, unknown or mistyped field, content that is "
            "empty, only whitespace or over 160 characters or has a NUL, a number that is not E.164, a "
            "`send_at` without a time zone, in the past or over 35 days ahead, a body that is not a "
            "JSON object (or not sent as application/json)."
        ),
        "example": error_example(
            "validation_error",
            "Invalid request body.",
            {
                "recipient_phone_number": ["Must be an E.164 number: + then 8 to 15 digits, the first not 0."],
                "content": ["Must be 1 to 160 characters."],
            },
        ),
    },
}

# Calls whose errors read differently from the shared ones above.
CANCEL_ERRORS = {
    409: {
        "description": "The message is not pending (it is sending, sent, failed or canceled already).",
        "example": error_example("conflict", f"Message {EXAMPLE_ID} is sent; only a pending message can be canceled."),
    }
}
BULK_RETRY_ERRORS = {
    422: {
        "description": (
            "Invalid body, with per-field messages: an unknown or mistyped property, a time without a time "
            "zone, `error_contains` empty or over 500 characters, `limit` outside 1 to 10,000."
        ),
        "example": error_example(
            "validation_error", "Invalid request body.", {"limit": ["Must be greater than or equal to 1 and less than or equal to 10000."]}
        ),
    }
}
CALLBACK_RETRY_ERRORS = {
    422: {
        "description": (
            "Invalid body, with per-field messages: an unknown or mistyped property, a time without a time "
            "zone, `limit` outside 1 to 10,000."
        ),
        "example": error_example(
            "validation_error", "Invalid request body.", {"occurred_after": [ZonedDateTime.ERROR]}
        ),
    }
}
CANCELED_EXAMPLE = {
    "id": EXAMPLE_ID,
    "content": EXAMPLE_CONTENT,
    "recipient_phone_number": EXAMPLE_PHONE,
    "status": "canceled",
    "attempts": 0,
    "webhook_message_id": None,
    "last_error": None,
    "created_at": "2026-11-28T09:00:00+00:00",
    "sent_at": None,
    "send_at": EXAMPLE_SEND_AT,
    "encoding": "GSM-7",
    "segments": 1,
    "delivery_status": None,
    "delivered_at": None,
    "error_code": None,
}

def _unavailable(dependencies: tuple[str, ...]) -> dict:
    names = " or ".join({"postgresql": "PostgreSQL", "redis": "Redis"}[name] for name in dependencies)
    first = dependencies[0]
    return {
        "description": f"{names} is unreachable." + (" The message names which." if len(dependencies) > 1 else ""),
        "example": error_example("unavailable", f"{first} is unavailable."),
    }


def messaging_call(blp, *statuses: int, needs: tuple[str, ...] = ("postgresql",), documented: dict | None = None):
    """Document a /messaging call: bearer auth, 401, 403, each error status it can answer, and 503 for `needs`;
    `documented` replaces the shared description of a status where the call's own reads differently."""

    def decorate(view):
        view = blp.doc(security=BEARER)(view)
        shared = {**ERROR_RESPONSES, **(documented or {})}
        responses = {401: shared[401], 403: shared[403], **{status: shared[status] for status in statuses}}
        responses[503] = _unavailable(needs)
        for status, response in responses.items():
            view = blp.alt_response(status, schema=ApiErrorSchema, **response)(view)
        return view

    return decorate


class MessagingApi(Api):
    """flask-smorest's Api, documenting each call's own errors instead of a catch-all default."""

    ERROR_SCHEMA = ApiErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_pagination_header(self):
        """We paginate in the body: flask-smorest's pagination header would only add an unused schema."""


assets = Blueprint("swagger_assets", __name__)


@assets.route(f"{ASSETS_URL}<path:filename>")
def asset(filename: str):
    return send_from_directory(swagger_ui_path, filename)


def register(app: Flask, api: Api) -> None:
    app.register_blueprint(assets)
