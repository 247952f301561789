"""What the API tests share: the constants of their examples and the checks of an answer's shape."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from api import cursors

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
TOKEN = "s3cret-token-of-32-characters-ok"
PHONE = "+905321234567"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
MESSAGE_FIELDS = {
    "id", "content", "recipient_phone_number", "status", "attempts",
    "webhook_message_id", "last_error", "created_at", "sent_at",
    "send_at", "encoding", "segments", "delivery_status", "delivered_at", "error_code",
}  # fmt: skip
CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"
CLOSED_PORT_POSTGRES = "postgresql://postgres@127.0.0.1:1/messaging"


def error_of(response) -> dict:
    """The error object of a JSON error answer, checking the shape every error shares."""
    assert response.is_json, response.data[:200]
    body = response.get_json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "fields"}
    return body["error"]


def cursor_key(client: FlaskClient) -> str:
    """The key the client's app signs its page cursors with (its SECRET_KEY, or the one kept in PostgreSQL)."""
    with client.application.app_context():
        return cursors.signing_key()


def row(db, message_id) -> dict:
    return db.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def operations(document: dict) -> dict[tuple[str, str], dict]:
    """Every operation of an OpenAPI document, by (method, path)."""
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels); the text must parse as Prometheus exposition."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
