"""Errors any call can answer, and the calls while PostgreSQL or Redis is down."""

from __future__ import annotations

from uuid import uuid4

import pytest

from messaging.domain.message import Status
from tests.integration.api_support import (
    CLOSED_PORT_POSTGRES,
    CLOSED_PORT_REDIS,
    PHONE,
    T0,
    error_of,
)

# --- errors anywhere ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/messaging", "/messaging/", "/messaging/sent/", "/messaging/messages/", "/docs/"]
)
def test_an_unknown_path_answers_404_json(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/messaging/start", {"POST"}),
        ("DELETE", "/messaging/stop", {"POST"}),
        ("POST", "/messaging/status", {"GET"}),
        ("PUT", "/messaging/sent", {"GET"}),
        ("GET", "/messaging/messages", {"POST"}),
        ("DELETE", f"/messaging/messages/{uuid4()}", {"GET"}),
        ("GET", f"/messaging/messages/{uuid4()}/retry", {"POST"}),
        ("POST", "/health", {"GET"}),
    ],
)
def test_a_wrong_method_answers_405_json_with_allow(client, method, path, allowed):
    response = client.open(path, method=method)

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_options_answers_no_content_with_allow_and_no_html(client):
    response = client.options("/messaging/sent")

    assert response.status_code == 204
    assert "text/html" not in response.headers.get("Content-Type", "")
    assert "GET" in response.headers["Allow"]


# --- PostgreSQL or Redis down ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/messaging/status"), ("POST", "/messaging/start"), ("POST", "/messaging/stop")]
)
def test_with_redis_down_the_switch_and_status_answer_503_naming_redis(make_app, method, path):
    client = make_app(redis_url=CLOSED_PORT_REDIS, broker_url=CLOSED_PORT_REDIS).test_client()

    response = client.open(path, method=method)

    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "unavailable"
    assert error["message"] == "redis is unavailable.", "no driver's words: they name hosts and ports"
    assert "Traceback" not in response.get_data(as_text=True)


def test_with_redis_down_a_message_is_still_read_from_postgresql(make_app, make_message):
    message_id = make_message(sending_status=Status.SENT, sent_at=T0, webhook_message_id="from-db")
    client = make_app(redis_url=CLOSED_PORT_REDIS, broker_url=CLOSED_PORT_REDIS).test_client()

    response = client.get(f"/messaging/messages/{message_id}")

    assert response.status_code == 200
    assert response.get_json()["webhook_message_id"] == "from-db"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/messaging/sent", None),
        ("GET", "/messaging/failed", None),
        ("GET", "/messaging/status", None),
        ("POST", "/messaging/messages", {"recipient_phone_number": PHONE, "content": "x"}),
        ("GET", f"/messaging/messages/{uuid4()}", None),
        ("POST", f"/messaging/messages/{uuid4()}/retry", None),
    ],
)
def test_with_postgresql_down_calls_answer_503_naming_postgresql(make_app, method, path, body):
    app = make_app(database_url=CLOSED_PORT_POSTGRES)
    app.extensions["messaging.runtime"].pool.timeout = 0.3  # the pool would wait 5 s for a connection

    response = app.test_client().open(path, method=method, json=body)

    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "unavailable"
    assert error["message"] == "postgresql is unavailable.", "no driver's words: they name hosts and ports"
    assert "Traceback" not in response.get_data(as_text=True)
