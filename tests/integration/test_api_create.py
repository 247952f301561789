"""POST /messaging/messages against the real PostgreSQL and Redis: what it takes, stores and refuses."""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from api.schemas import NewMessageSchema
from messaging.domain.message import Status
from messaging.redis import keys
from tests.integration.api_support import (
    ISO_UTC,
    MESSAGE_FIELDS,
    PHONE,
    error_of,
    row,
)

# --- POST /messaging/messages ------------------------------------------------------------


def test_a_new_message_is_stored_pending_and_answered_with_201(client, db):
    response = client.post("/messaging/messages", json={"recipient_phone_number": PHONE, "content": "Hello ✓"})

    assert response.status_code == 201
    message = response.get_json()
    assert set(message) == MESSAGE_FIELDS
    assert message["status"] == "pending"
    assert message["attempts"] == 0
    assert message["content"] == "Hello ✓"
    assert message["sent_at"] is None and message["webhook_message_id"] is None and message["last_error"] is None
    assert ISO_UTC.match(message["created_at"])
    stored = row(db, UUID(message["id"]))
    assert stored["sending_status"] == Status.PENDING
    assert (stored["recipient_phone_number"], stored["content"]) == (PHONE, "Hello ✓")


@pytest.mark.parametrize(
    "content",
    ["x", "x" * 160, "😀" * 160, "line one\nline two", "  x  ", "İstanbul çğüşö", "\u200b"],
    ids=["one", "160-ascii", "160-emoji", "newline", "spaces-around", "turkish", "zero-width"],
)
def test_content_of_1_to_160_characters_of_any_script_is_accepted(client, db, content):
    response = client.post("/messaging/messages", json={"recipient_phone_number": PHONE, "content": content})

    assert response.status_code == 201, response.get_json()
    assert row(db, UUID(response.get_json()["id"]))["content"] == content



BLANKS = "".join(chr(code) for code in range(0x110000) if chr(code).isspace())


@given(st.text(alphabet=st.sampled_from(BLANKS + "a\x00\u200b\ufeff"), max_size=12))
def test_content_is_refused_exactly_when_it_is_only_whitespace_or_holds_nul(content):
    errors = NewMessageSchema().validate({"recipient_phone_number": PHONE, "content": content})

    assert ("content" in errors) == (content.isspace() or not content or "\x00" in content)

@pytest.mark.parametrize(
    "phone", ["+14155552671", "+12345678", "+123456789012345"], ids=["us", "8-digits", "15-digits"]
)
def test_every_e164_number_is_accepted(client, phone):
    response = client.post("/messaging/messages", json={"recipient_phone_number": phone, "content": "hi"})

    assert response.status_code == 201


INVALID_FIELDS = [
    ({"content": "hi"}, "recipient_phone_number", "missing number"),
    ({"recipient_phone_number": PHONE}, "content", "missing content"),
    ({"recipient_phone_number": PHONE, "content": ""}, "content", "empty content"),
    ({"recipient_phone_number": PHONE, "content": "x" * 161}, "content", "161 characters"),
    ({"recipient_phone_number": PHONE, "content": "  "}, "content", "spaces only"),
    ({"recipient_phone_number": PHONE, "content": "\t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000"}, "content", "whitespace only"),
    ({"recipient_phone_number": PHONE, "content": 5}, "content", "number content"),
    ({"recipient_phone_number": PHONE, "content": None}, "content", "null content"),
    ({"recipient_phone_number": PHONE, "content": ["hi"]}, "content", "list content"),
    ({"recipient_phone_number": PHONE, "content": "a\x00b"}, "content", "NUL in content"),
    ({"recipient_phone_number": PHONE, "content": "\ud800"}, "content", "lone surrogate"),
    ({"recipient_phone_number": 905321234567, "content": "hi"}, "recipient_phone_number", "number as integer"),
    ({"recipient_phone_number": "905321234567", "content": "hi"}, "recipient_phone_number", "no plus"),
    ({"recipient_phone_number": "+05321234567", "content": "hi"}, "recipient_phone_number", "first digit 0"),
    ({"recipient_phone_number": "+1234567", "content": "hi"}, "recipient_phone_number", "7 digits"),
    ({"recipient_phone_number": "+1234567890123456", "content": "hi"}, "recipient_phone_number", "16 digits"),
    ({"recipient_phone_number": "+90 532 123 45 67", "content": "hi"}, "recipient_phone_number", "spaces"),
    ({"recipient_phone_number": PHONE + "\n", "content": "hi"}, "recipient_phone_number", "final newline"),
    ({"recipient_phone_number": "+９０５３２１２３４５６７", "content": "hi"}, "recipient_phone_number", "fullwidth digits"),
    ({"recipient_phone_number": "+90532\x001234567", "content": "hi"}, "recipient_phone_number", "NUL in number"),
    ({"recipient_phone_number": PHONE, "content": "hi", "priority": 1}, "priority", "unknown field"),
]


@pytest.mark.parametrize(("body", "field", "case"), INVALID_FIELDS, ids=[case for _, _, case in INVALID_FIELDS])
def test_an_invalid_field_answers_422_naming_it_and_stores_nothing(client, db, body, field, case):
    response = client.post("/messaging/messages", json=body)

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field]
    assert all(isinstance(text, str) and text for text in error["fields"][field])
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 0


INVALID_BODIES = [
    (b"not json", "application/json", "not JSON"),
    (b'{"recipient_phone_number": "+905321234567",', "application/json", "cut short"),
    (b"[]", "application/json", "array"),
    (b'"text"', "application/json", "string"),
    (b"42", "application/json", "number"),
    (b"null", "application/json", "null"),
    (b"\xff\xfe{\x00}\x00", "application/json", "not UTF-8"),
    (b'{"recipient_phone_number": NaN, "content": "hi"}', "application/json", "NaN"),
    (b'{"content": ' + b"9" * 5000 + b"}", "application/json", "5000-digit integer"),
    (b"[" * 20000 + b"]" * 20000, "application/json", "nested 20000 deep"),
    (b'{"recipient_phone_number": "+905321234567", "content": "hi"}', "text/plain", "text/plain"),
    (b"recipient_phone_number=%2B905321234567&content=hi", "application/x-www-form-urlencoded", "form"),
    (b'{"recipient_phone_number": "+905321234567", "content": "hi"}', None, "no content type"),
]


@pytest.mark.parametrize(("body", "content_type", "case"), INVALID_BODIES, ids=[case for _, _, case in INVALID_BODIES])
def test_a_body_that_is_not_a_json_object_answers_422(client, db, body, content_type, case):
    response = client.post("/messaging/messages", data=body, content_type=content_type)

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == ["_body"]
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 0


def test_an_empty_body_reports_both_fields_missing(client):
    response = client.post("/messaging/messages", data=b"", content_type="application/json")

    assert response.status_code == 422
    assert set(error_of(response)["fields"]) == {"recipient_phone_number", "content"}


def test_a_utf8_body_with_a_byte_order_mark_and_charset_is_accepted(client):
    body = '\ufeff{"recipient_phone_number": "+905321234567", "content": "çay"}'.encode()

    response = client.post("/messaging/messages", data=body, content_type="application/json; charset=utf-8")

    assert response.status_code == 201
    assert response.get_json()["content"] == "çay"


def test_a_body_over_64_kib_answers_413(client, db):
    content = "x" * (64 * 1024)
    response = client.post("/messaging/messages", json={"recipient_phone_number": PHONE, "content": content})

    assert response.status_code == 413
    assert error_of(response)["code"] == "request_entity_too_large"
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 0


def test_any_call_with_a_body_over_64_kib_answers_413_even_if_it_reads_none(client, cache):
    response = client.post("/messaging/stop", data=b"x" * (64 * 1024 + 1), content_type="application/json")

    assert response.status_code == 413
    assert cache.get(keys.ENABLED) is None



def post_chunked(client: FlaskClient, path: str, body: bytes):
    """A body as gunicorn hands over a chunked one: no length, the stream ends where the body does."""
    return client.post(
        path,
        data=body,
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


VALID_BODY = json.dumps({"recipient_phone_number": PHONE, "content": "hi"}).encode()


@pytest.mark.parametrize(
    "body",
    [b" " * 100_000 + VALID_BODY, VALID_BODY + b" " * (64 * 1024), b"x" * (20 * 1024 * 1024)],
    ids=["spaces-before-json", "spaces-after-json", "20-mb"],
)
def test_a_chunked_body_over_64_kib_answers_413_however_it_is_laid_out(client, db, body):
    response = post_chunked(client, "/messaging/messages", body)

    assert response.status_code == 413
    assert error_of(response)["code"] == "request_entity_too_large"
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 0


def test_any_call_with_a_chunked_body_over_64_kib_answers_413_even_if_it_reads_none(client, cache):
    response = post_chunked(client, "/messaging/stop", b"x" * (64 * 1024 + 1))

    assert response.status_code == 413
    assert cache.get(keys.ENABLED) is None


def test_a_chunked_body_of_exactly_64_kib_is_read_whole(client):
    response = post_chunked(client, "/messaging/messages", VALID_BODY + b" " * (64 * 1024 - len(VALID_BODY)))

    assert response.status_code == 201
