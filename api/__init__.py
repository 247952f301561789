"""The HTTP API: `gunicorn 'api:create_app()'`."""

from __future__ import annotations

import io
from typing import IO

from celery import Celery
from flask import Flask, Request, Response, current_app, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.utils import cached_property

from messaging import timeouts
from messaging.redis.client import sentinel_transport_options
from messaging.runtime import ApiRuntime
from messaging.settings import Settings

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app with its own pool, Redis client and broker producer."""
    from api import auth, browsers, callbacks, docs, errors, health, messages, receipts, sending

    settings = settings or Settings.from_env()
    auth.check_access(settings)
    app = Flask(__name__)
    app.request_class = BoundedRequest
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_TITLE="Messaging service",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=docs.ASSETS_URL,
        # Flask's name for the key that signs what the app hands out (page cursors); when it is
        # empty, api/cursors.py reads the key all API processes share from PostgreSQL on first use.
        SECRET_KEY=settings.secret_key or None,
    )
    app.extensions["messaging.settings"] = settings
    app.extensions["messaging.runtime"] = ApiRuntime.open(settings, concurrency=8, name="api")
    app.extensions["messaging.celery"] = _celery_producer(settings)

    # App-wide hooks run before a routing error is raised: a wrong path or method under
    # /messaging/ needs the token too. A browser's wrong Host or foreign page is refused first.
    app.before_request(browsers.check_host)
    app.before_request(browsers.check_origin)
    app.before_request(_refuse_large_body)
    app.before_request(auth.require_token)
    app.after_request(_no_content_for_options)
    api = docs.MessagingApi(app, spec_kwargs=docs.SPEC_KWARGS)
    for blueprint in (sending.blp, messages.blp, receipts.blp, callbacks.blp, health.blp):
        api.register_blueprint(blueprint)
    docs.register(app, api)
    errors.register(app)
    return app


def close_app(app: Flask) -> None:
    """Release the app's connections (called by gunicorn when a worker exits)."""
    app.extensions["messaging.runtime"].close()
    app.extensions["messaging.celery"].close()


def _celery_producer(settings: Settings) -> Celery:
    """Only sends tasks by name: the API does not import the worker's code."""
    producer = Celery("messaging-api", broker=settings.broker_url, set_as_current=False)
    producer.conf.update(
        broker_connection_timeout=3,
        # A publish on a silent connection fails within seconds and is retried on a fresh one.
        broker_transport_options={
            **timeouts.broker_transport_options(settings.broker_url),
            **sentinel_transport_options(settings),
        },
        task_serializer="json",
    )
    return producer


class BoundedRequest(Request):
    """A request whose body over MAX_BODY_BYTES answers 413 however it is framed.

    A chunked body has no length to check first, and werkzeug stops reading it at the limit
    without saying so: the rest is cut off, and a cut body may still parse. Here it is read up
    to one byte past the limit, never more, and refused if that byte is there.
    """

    @cached_property
    def stream(self) -> IO[bytes]:
        if self.content_length is not None or not self.environ.get("wsgi.input_terminated"):
            return super().stream
        try:
            body = self.input_stream.read(MAX_BODY_BYTES + 1)  # the server ends the stream at the last chunk
        except (OSError, ValueError, ParseException) as error:
            # gunicorn decodes the chunks as they are read, so a malformed one raises here.
            raise BadRequest("Malformed chunked request body.") from error
        if len(body) > MAX_BODY_BYTES:
            raise RequestEntityTooLarge()
        return io.BytesIO(body)


def _refuse_large_body() -> None:
    """413 for any call whose body is too large, not only for those that read it."""
    if request.content_length is None:
        request.get_data()  # a chunked body, if any: read here (see BoundedRequest) and kept for the view
    elif request.content_length > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()


def _no_content_for_options(response: Response) -> Response:
    """Flask answers OPTIONS with an empty text/html 200; say "no content" instead (Allow lists the methods)."""
    if request.method == "OPTIONS" and response.status_code == 200 and not response.get_data():
        response.status_code = 204
        del response.headers["Content-Type"]
    return response


def runtime() -> ApiRuntime:
    return current_app.extensions["messaging.runtime"]


def settings() -> Settings:
    return current_app.extensions["messaging.settings"]


def celery() -> Celery:
    return current_app.extensions["messaging.celery"]
