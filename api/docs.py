"""The OpenAPI document's extras and Swagger UI served from the swagger-ui-bundle package (no CDN)."""

from __future__ import annotations

from flask import Blueprint, Flask, send_from_directory
from flask_smorest import Api
from swagger_ui_bundle import swagger_ui_path

from api.schemas import ApiErrorSchema as ErrorSchema

ASSETS_URL = "/docs/assets/"

SPEC_KWARGS = {
    "info": {
        "description": (
            "Outbound messaging: messages stored in PostgreSQL are sent to a webhook by Celery "
            "workers, a batch every SEND_INTERVAL_SECONDS while sending is enabled.\n\n"
            "When API_TOKEN is set, every /messaging/* call needs `Authorization: Bearer <token>`."
        )
    },
    "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearerAuth": []}],
}

ERROR_RESPONSES = {
    400: {"schema": ErrorSchema, "description": "Invalid query parameters."},
    401: {"schema": ErrorSchema, "description": "Missing or wrong bearer token (only when API_TOKEN is set)."},
    404: {"schema": ErrorSchema, "description": "No message with that id."},
    409: {"schema": ErrorSchema, "description": "The message is not in a state that allows this."},
    413: {"schema": ErrorSchema, "description": "Request body over 64 KiB."},
    422: {"schema": ErrorSchema, "description": "Invalid request body, with per-field messages."},
    503: {"schema": ErrorSchema, "description": "PostgreSQL or Redis is unreachable."},
}

class MessagingApi(Api):
    """flask-smorest's Api, documenting our error shape as the default error."""

    ERROR_SCHEMA = ErrorSchema


assets = Blueprint("swagger_assets", __name__)


@assets.route(f"{ASSETS_URL}<path:filename>")
def asset(filename: str):
    return send_from_directory(swagger_ui_path, filename)


def register(app: Flask, api: Api) -> None:
    app.register_blueprint(assets)
