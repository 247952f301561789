"""The HTTP API against the real PostgreSQL and Redis: every call's answers, good and bad."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
import redis
from celery import signals
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from api import cursors
from api.schemas import NewMessageSchema
from api.sending import ALREADY_ON, STARTED
from messaging.domain.message import Status
from messaging.postgres import migrations
from messaging.postgres.records import Records
from messaging.redis import keys
from messaging.task_names import BATCH_TASK
from tests.helpers import wait_for

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
TOKEN = "s3cret-token"
PHONE = "+905321234567"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
MESSAGE_FIELDS = {
    "id", "content", "recipient_phone_number", "status", "attempts",
    "webhook_message_id", "last_error", "created_at", "sent_at",
    "send_at", "encoding", "segments",
}  # fmt: skip
CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"
CLOSED_PORT_POSTGRES = "postgresql://postgres@127.0.0.1:1/messaging"


@pytest.fixture
def token_client(shared_app, settings) -> FlaskClient:
    return shared_app(api_token=TOKEN).test_client()


@pytest.fixture
def cache(settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()


def error_of(response) -> dict:
    """The error object of a JSON error answer, checking the shape every error shares."""
    assert response.is_json, response.data[:200]
    body = response.get_json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "fields"}
    return body["error"]


def row(db, message_id) -> dict:
    return db.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


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

# --- GET /messaging/messages/<id> ---------------------------------------------------------


def test_a_message_is_read_from_postgresql(client, make_message):
    message_id = make_message(content="stored", sending_status=Status.FAILED, attempts=5, last_error="HTTP 400")

    response = client.get(f"/messaging/messages/{message_id}")

    assert response.status_code == 200
    message = response.get_json()
    assert set(message) == MESSAGE_FIELDS
    assert message["id"] == str(message_id)
    assert (message["status"], message["attempts"], message["last_error"]) == ("failed", 5, "HTTP 400")


def test_a_sent_message_shows_its_delivery_from_postgresql_in_utc(client, make_message, db):
    db.execute("SET TIME ZONE 'Asia/Tokyo'")
    sent_at = datetime(2026, 11, 28, 9, 2, 0, 120000, tzinfo=timezone.utc)
    message_id = make_message(sending_status=Status.SENT, sent_at=sent_at, webhook_message_id="wh-1", attempts=1)

    message = client.get(f"/messaging/messages/{message_id}").get_json()

    assert (message["status"], message["webhook_message_id"]) == ("sent", "wh-1")
    assert message["sent_at"] == "2026-11-28T09:02:00.120000+00:00"


def test_the_delivery_details_come_from_the_redis_cache_when_it_has_them(client, make_message, cache):
    # A worker delivered it and cached the delivery; PostgreSQL has not recorded it yet.
    message_id = make_message(sending_status=Status.SENDING)
    cache.set(keys.sent(message_id), json.dumps({"messageId": "from-cache", "sent_at": "2026-11-28T09:02:00+00:00"}))

    message = client.get(f"/messaging/messages/{message_id}").get_json()

    assert message["status"] == "sent"
    assert message["webhook_message_id"] == "from-cache"
    assert message["sent_at"] == "2026-11-28T09:02:00+00:00"


@pytest.mark.parametrize(
    "entry",
    ['{"messageId": null, "sent_at": "not a time"}', '{"messageId": 5, "sent_at": 7}', "[1, 2]", "not json"],
    ids=["nulls", "wrong-types", "not-an-object", "not-json"],
)
def test_a_damaged_cache_entry_falls_back_to_postgresql_values(client, make_message, cache, entry):
    sent_at = datetime(2026, 11, 28, 9, 2, tzinfo=timezone.utc)
    message_id = make_message(sending_status=Status.SENT, sent_at=sent_at, webhook_message_id="from-db")
    cache.set(keys.sent(message_id), entry)

    response = client.get(f"/messaging/messages/{message_id}")

    assert response.status_code == 200
    message = response.get_json()
    assert (message["webhook_message_id"], message["sent_at"]) == ("from-db", "2026-11-28T09:02:00+00:00")


@pytest.mark.parametrize(
    "message_id",
    [str(uuid4()), "abc", "123", "%00", "5f0c6f2e-2a43-4c0e-9b9e-0c5b7f7b2d1", "x" * 1000, "%F0%9F%98%80", "%ff"],
    ids=["unknown", "word", "digits", "nul", "35-chars", "long", "emoji", "bad-utf8"],
)
def test_an_unknown_or_malformed_id_answers_404(client, message_id):
    response = client.get(f"/messaging/messages/{message_id}")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# --- POST /messaging/messages/<id>/retry --------------------------------------------------


def test_retrying_a_failed_message_makes_it_pending_with_attempts_reset(client, make_message, db):
    message_id = make_message(sending_status=Status.FAILED, attempts=5, next_attempt_at=T0 + timedelta(days=3650))

    response = client.post(f"/messaging/messages/{message_id}/retry")

    assert response.status_code == 200
    message = response.get_json()
    assert set(message) == MESSAGE_FIELDS
    assert (message["id"], message["status"], message["attempts"]) == (str(message_id), "pending", 0)
    stored = row(db, message_id)
    assert (stored["sending_status"], stored["attempts"]) == (Status.PENDING, 0)
    assert stored["next_attempt_at"] <= datetime.now(timezone.utc)  # due at the next batch


def test_a_retried_message_shows_no_error_from_before_the_retry(client, make_message, db):
    message_id = make_message(sending_status=Status.FAILED, attempts=5, last_error="HTTP 500 Internal Server Error")

    retried = client.post(f"/messaging/messages/{message_id}/retry").get_json()

    assert (retried["status"], retried["attempts"], retried["last_error"]) == ("pending", 0, None)
    assert client.get(f"/messaging/messages/{message_id}").get_json()["last_error"] is None
    assert row(db, message_id)["last_error"] is None


@pytest.mark.parametrize("status", [Status.PENDING, Status.SENDING, Status.SENT], ids=lambda s: s.label)
def test_retrying_a_message_that_is_not_failed_answers_409_and_changes_nothing(client, make_message, db, status):
    message_id = make_message(sending_status=status, attempts=2)
    before = row(db, message_id)

    response = client.post(f"/messaging/messages/{message_id}/retry")

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict"
    assert status.label in error["message"]
    assert row(db, message_id) == before


def test_retrying_twice_answers_409_the_second_time(client, make_message):
    message_id = make_message(sending_status=Status.FAILED, attempts=5)

    assert client.post(f"/messaging/messages/{message_id}/retry").status_code == 200
    assert client.post(f"/messaging/messages/{message_id}/retry").status_code == 409


@pytest.mark.parametrize("message_id", [str(uuid4()), "not-a-uuid"], ids=["unknown", "malformed"])
def test_retrying_an_unknown_or_malformed_id_answers_404(client, message_id):
    response = client.post(f"/messaging/messages/{message_id}/retry")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# --- GET /messaging/sent and /messaging/failed --------------------------------------------


def make_listed(make_message, path: str, when: datetime, **columns) -> UUID:
    """A message that `path` lists, ordered by `when`."""
    if path == "/messaging/sent":
        return make_message(sending_status=Status.SENT, sent_at=when, **columns)
    return make_message(sending_status=Status.FAILED, updated_at=when, attempts=5, last_error="HTTP 500", **columns)


LISTS = pytest.mark.parametrize("path", ["/messaging/sent", "/messaging/failed"])


@LISTS
def test_a_list_shows_only_its_status_newest_first_with_ties_by_id(client, make_message, path):
    older = make_listed(make_message, path, T0)
    tied = sorted((make_listed(make_message, path, T0 + timedelta(hours=1)) for _ in range(3)), reverse=True)
    newest = make_listed(make_message, path, T0 + timedelta(hours=2))
    listed = Status.SENT if path == "/messaging/sent" else Status.FAILED
    for status in set(Status) - {listed}:
        make_message(sending_status=status, sent_at=T0 + timedelta(days=1), updated_at=T0 + timedelta(days=1))

    response = client.get(path)

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"data", "pagination"}
    assert [m["id"] for m in body["data"]] == [str(i) for i in [newest, *tied, older]]
    assert all(set(m) == MESSAGE_FIELDS for m in body["data"])
    assert body["pagination"] == {"limit": 20, "offset": 0, "total": 5, "next_cursor": None}


def test_the_sent_list_answers_the_seed_shape_and_content(client, make_message):
    sent_at = datetime(2026, 11, 28, 9, 2, tzinfo=timezone.utc)
    message_id = make_message(
        content="hi", sending_status=Status.SENT, sent_at=sent_at, webhook_message_id="wh", attempts=1
    )

    body = client.get("/messaging/sent?limit=10&offset=0").get_json()

    assert body["data"] == [
        {
            "id": str(message_id),
            "content": "hi",
            "recipient_phone_number": "+905320000000",
            "status": "sent",
            "attempts": 1,
            "webhook_message_id": "wh",
            "last_error": None,
            "created_at": body["data"][0]["created_at"],
            "sent_at": "2026-11-28T09:02:00+00:00",
            "send_at": None,
            "encoding": "GSM-7",
            "segments": 1,
        }
    ]
    assert ISO_UTC.match(body["data"][0]["created_at"])


@LISTS
def test_limit_and_offset_choose_the_window(client, make_message, path):
    ids = [make_listed(make_message, path, T0 - timedelta(minutes=m)) for m in range(7)]  # newest first

    body = client.get(f"{path}?limit=3&offset=2").get_json()

    assert [m["id"] for m in body["data"]] == [str(i) for i in ids[2:5]]
    assert (body["pagination"]["limit"], body["pagination"]["offset"], body["pagination"]["total"]) == (3, 2, 7)
    assert body["pagination"]["next_cursor"] is not None
    beyond = client.get(f"{path}?offset=7").get_json()
    assert beyond["data"] == [] and beyond["pagination"]["next_cursor"] is None


@LISTS
def test_following_next_cursor_walks_every_row_once_in_order(client, make_message, path):
    # Ties on the sort time across page boundaries, where a keyset must fall back to the id.
    times = [T0 - timedelta(minutes=m // 3) for m in range(11)]
    expected = [str(i) for _, i in sorted(((t, make_listed(make_message, path, t)) for t in times), reverse=True)]

    seen, url, pages = [], f"{path}?limit=4", 0
    while url:
        body = client.get(url).get_json()
        seen += [m["id"] for m in body["data"]]
        assert body["pagination"]["total"] == 11
        pages += 1
        cursor = body["pagination"]["next_cursor"]
        url = cursor and f"{path}?limit=4&cursor={cursor}"

    assert seen == expected
    assert pages == 3  # 4 + 4 + 3: the last page knows it is the last


@LISTS
def test_a_full_last_page_has_no_next_cursor(client, make_message, path):
    for m in range(4):
        make_listed(make_message, path, T0 + timedelta(minutes=m))

    assert client.get(f"{path}?limit=4").get_json()["pagination"]["next_cursor"] is None


def test_a_cursor_page_is_the_same_as_the_offset_page(client, make_message):
    for m in range(30):
        make_listed(make_message, "/messaging/sent", T0 + timedelta(seconds=m))

    first = client.get("/messaging/sent?limit=10").get_json()
    by_cursor = client.get(f"/messaging/sent?limit=10&cursor={first['pagination']['next_cursor']}").get_json()
    by_offset = client.get("/messaging/sent?limit=10&offset=10").get_json()

    assert by_cursor["data"] == by_offset["data"]


def test_seed_style_sent_rows_without_sent_at_are_listed_and_paged_without_loss(client, make_message):
    # The seed's INSERT has no sent_at: such rows sort first and cannot be named by a time.
    undated = [make_message(sending_status=Status.SENT) for _ in range(5)]
    dated = [make_listed(make_message, "/messaging/sent", T0 + timedelta(minutes=m)) for m in range(4)]

    seen, url = [], "/messaging/sent?limit=3"
    while url:
        body = client.get(url).get_json()
        assert body["data"], "no empty pages"
        seen += [m["id"] for m in body["data"]]
        cursor = body["pagination"]["next_cursor"]
        url = cursor and f"/messaging/sent?limit=3&cursor={cursor}"

    assert sorted(seen[:5]) == sorted(str(i) for i in undated)
    assert seen[5:] == [str(i) for i in reversed(dated)]


BAD_QUERIES = [
    ("limit=abc", "limit"),
    ("limit=0", "limit"),
    ("limit=101", "limit"),
    ("limit=-1", "limit"),
    ("limit=1.5", "limit"),
    ("limit=", "limit"),
    ("limit=1e2", "limit"),
    ("limit=%201", "limit"),
    ("limit=1_0", "limit"),
    ("limit=%EF%BC%91", "limit"),  # a fullwidth 1, which int() takes
    ("limit=" + "9" * 5000, "limit"),
    ("offset=-1", "offset"),
    ("offset=1.5", "offset"),
    ("offset=", "offset"),
    ("offset=x", "offset"),
    ("offset=2147483648", "offset"),
    ("offset=99999999999999999999999", "offset"),
    ("cursor=", "cursor"),
    ("cursor=abc", "cursor"),
    ("cursor=%00", "cursor"),
    ("cursor=o-1", "cursor"),
    ("cursor=1_zz", "cursor"),
    ("cursor=" + "A" * 5000, "cursor"),
    ("offset=3&cursor=o4", "cursor"),
]


@LISTS
@pytest.mark.parametrize(("query", "field"), BAD_QUERIES, ids=[query[:24] for query, _ in BAD_QUERIES])
def test_bad_paging_parameters_answer_400_naming_them(client, path, query, field):
    response = client.get(f"{path}?{query}")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field]


@pytest.mark.parametrize(
    "cursor",
    [
        cursors.Keyset(datetime(1970, 1, 1, tzinfo=timezone.utc), UUID(int=0)),
        cursors.Keyset(datetime.min.replace(tzinfo=timezone.utc), UUID(int=2**128 - 1)),
        cursors.Keyset(datetime.max.replace(tzinfo=timezone.utc), UUID(int=2**128 - 1)),
        cursors.Offset(9_999_999_999),
    ],
    ids=["epoch", "far-past", "far-future", "far-offset"],
)
def test_a_cursor_the_api_issued_answers_a_page_at_any_depth(client, make_message, cursor):
    make_listed(make_message, "/messaging/sent", T0)

    response = client.get(f"/messaging/sent?cursor={cursors.encode(cursor, 'sent')}")

    assert response.status_code == 200
    assert response.get_json()["pagination"]["total"] == 1


def test_a_cursor_of_one_list_answers_400_on_the_other(client, make_message):
    for minute in range(3):
        make_listed(make_message, "/messaging/sent", T0 + timedelta(minutes=minute))
        make_listed(make_message, "/messaging/failed", T0 + timedelta(minutes=minute))
    sent_cursor = client.get("/messaging/sent?limit=1").get_json()["pagination"]["next_cursor"]
    failed_cursor = client.get("/messaging/failed?limit=1").get_json()["pagination"]["next_cursor"]

    for path, foreign in (("/messaging/sent", failed_cursor), ("/messaging/failed", sent_cursor)):
        response = client.get(f"{path}?cursor={foreign}")
        assert response.status_code == 400, path
        assert list(error_of(response)["fields"]) == ["cursor"]


@LISTS
@pytest.mark.parametrize(
    "made_up",
    ["o40", "0_" + "0" * 32, "1764320520120000_5f0c6f2e2a434c0e9b9e0c5b7f7b2d11"],
    ids=["offset", "epoch", "old-example"],
)
def test_a_hand_made_cursor_answers_400(client, make_message, path, made_up):
    make_listed(make_message, path, T0)

    response = client.get(f"{path}?cursor={made_up}")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["cursor"]


@LISTS
def test_an_issued_cursor_changed_by_hand_answers_400(client, make_message, path):
    for minute in range(3):
        make_listed(make_message, path, T0 + timedelta(minutes=minute))
    issued = client.get(f"{path}?limit=1").get_json()["pagination"]["next_cursor"]
    assert client.get(f"{path}?cursor={issued}").status_code == 200

    # One second earlier in the position, the check left as it was.
    micros, rest = issued.split("_", 1)
    tampered = f"{int(micros) - 1_000_000}_{rest}"

    assert client.get(f"{path}?cursor={tampered}").status_code == 400


@given(
    moment=st.datetimes(timezones=st.just(timezone.utc)),
    message_id=st.uuids(),
    offset=st.integers(min_value=0, max_value=2**31 + 100),
)
def test_a_cursor_names_exactly_the_row_or_offset_it_was_made_from_in_its_own_list(moment, message_id, offset):
    for cursor in (cursors.Keyset(moment, message_id), cursors.Offset(offset)):
        text = cursors.encode(cursor, "sent")
        assert re.fullmatch(cursors.PATTERN, text)
        assert cursors.decode(text, "sent") == cursor
        with pytest.raises(ValueError):
            cursors.decode(text, "failed")


@LISTS
def test_swagger_try_it_out_with_what_it_fills_in_gives_a_real_page(client, make_message, document, path):
    """Swagger UI fills each query parameter with its example (else its default) and sends them all."""
    listed = {str(make_listed(make_message, path, T0 + timedelta(minutes=m))) for m in range(3)}
    parameters = operations(document)[("get", path)]["parameters"]
    filled = {}
    for parameter in parameters:
        schema = parameter.get("schema", {})
        value = parameter.get("example", schema.get("example", schema.get("default")))
        if value is not None:
            filled[parameter["name"]] = value

    response = client.get(path, query_string=filled)

    assert response.status_code == 200, response.get_json()
    assert {m["id"] for m in response.get_json()["data"]} == listed


def test_unknown_query_parameters_are_ignored(client):
    assert client.get("/messaging/sent?page=2&limit=5").get_json()["pagination"]["limit"] == 5


# --- start, stop, status -----------------------------------------------------------------


def test_start_enables_sending_and_runs_one_batch_at_once(client, cache, celery_worker, make_message, receiver, db):
    ids = {str(make_message()) for _ in range(2)}
    cache.set(keys.ENABLED, "0")

    response = client.post("/messaging/start")

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"enabled", "message"}
    assert body["enabled"] is True and isinstance(body["message"], str)
    assert cache.get(keys.ENABLED) == "1"
    # The interval is 120 s in tests: only the batch that start runs can deliver these now.
    wait_for(lambda: {d["key"] for d in receiver.deliveries()} == ids, what="start's batch")
    wait_for(lambda: db.execute("SELECT count(*) AS n FROM messages WHERE sending_status = 1").fetchone()["n"] == 2)



@pytest.fixture
def batches() -> Iterator[dict[str, int]]:
    """Batch tasks published (by the API, in this process) and finished (by the in-process worker)."""
    seen = {"published": 0, "finished": 0}
    lock = threading.Lock()

    def published(sender=None, **_):
        if sender == BATCH_TASK:
            with lock:
                seen["published"] += 1

    def finished(task=None, **_):
        if task is not None and task.name == BATCH_TASK:
            with lock:
                seen["finished"] += 1

    signals.after_task_publish.connect(published, weak=False)
    signals.task_postrun.connect(finished, weak=False)
    yield seen
    signals.after_task_publish.disconnect(published)
    signals.task_postrun.disconnect(finished)


def test_concurrent_starts_run_one_batch_between_them(make_app, cache, celery_worker, make_message, db, batches):
    for _ in range(10):
        make_message()
    cache.set(keys.ENABLED, "0")
    clients = [make_app().test_client() for _ in range(2)]  # two API processes, one Redis
    ready = threading.Barrier(5)

    def start(n: int) -> dict:
        ready.wait()
        return clients[n % 2].post("/messaging/start").get_json()

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(start, range(5)))

    assert all(answer["enabled"] for answer in answers)
    assert Counter(answer["message"] for answer in answers) == {STARTED: 1, ALREADY_ON: 4}
    assert batches["published"] == 1
    wait_for(lambda: batches["finished"] == 1, what="the batch to run")
    assert db.execute("SELECT count(*) AS n FROM messages WHERE sending_status <> 0").fetchone()["n"] == 2


@pytest.mark.parametrize(
    ("switch", "auto_start", "runs_a_batch"),
    [("1", False, False), (None, True, False), ("0", True, True), (None, False, True)],
    ids=["on", "unset-auto-start", "off", "unset-no-auto-start"],
)
def test_start_runs_a_batch_only_when_sending_was_stopped(make_app, cache, batches, switch, auto_start, runs_a_batch):
    if switch is not None:
        cache.set(keys.ENABLED, switch)

    answer = make_app(auto_start=auto_start).test_client().post("/messaging/start").get_json()

    assert answer == {"enabled": True, "message": STARTED if runs_a_batch else ALREADY_ON}
    assert batches["published"] == (1 if runs_a_batch else 0)
    assert cache.get(keys.ENABLED) == "1"

def test_stop_disables_sending_and_both_can_be_repeated(client, cache):
    for _ in range(2):
        response = client.post("/messaging/stop")
        assert response.status_code == 200
        body = response.get_json()
        assert set(body) == {"enabled", "message"} and body["enabled"] is False
        assert cache.get(keys.ENABLED) == "0"
        assert client.get("/messaging/status").get_json()["enabled"] is False
    for _ in range(2):
        assert client.post("/messaging/start").get_json()["enabled"] is True
        assert client.get("/messaging/status").get_json()["enabled"] is True


def test_status_shows_the_switch_schedule_and_counts(make_app, make_message):
    client = make_app(send_interval_seconds=0.5, send_batch_size=7, auto_start=False).test_client()
    for status, n in ((Status.PENDING, 3), (Status.SENDING, 1), (Status.SENT, 2)):
        for _ in range(n):
            make_message(sending_status=status)

    response = client.get("/messaging/status")

    assert response.status_code == 200
    assert response.get_json() == {
        "enabled": False,
        "interval_seconds": 0.5,
        "batch_size": 7,
        "counts": {"pending": 3, "sending": 1, "sent": 2, "failed": 0, "canceled": 0},
        "breaker": {"state": "closed", "since": None, "why": None, "reopens_at": None},
        "rate_limit": {"per_second": 0.0, "burst": 1, "paused_until": None},
    }


@pytest.mark.parametrize("auto_start", [True, False])
def test_before_anyone_switches_status_follows_auto_start(make_app, auto_start):
    client = make_app(auto_start=auto_start).test_client()

    assert client.get("/messaging/status").get_json()["enabled"] is auto_start


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


# --- auth --------------------------------------------------------------------------------

PROTECTED = [
    ("POST", "/messaging/start"),
    ("POST", "/messaging/stop"),
    ("GET", "/messaging/status"),
    ("GET", "/messaging/sent"),
    ("GET", "/messaging/failed"),
    ("POST", "/messaging/messages"),
    ("GET", f"/messaging/messages/{uuid4()}"),
    ("POST", f"/messaging/messages/{uuid4()}/retry"),
    ("GET", "/messaging/nope"),
    ("DELETE", "/messaging/sent"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer s3cret-toke"],
)
def test_with_api_token_set_every_messaging_call_needs_the_token(token_client, method, path, authorization, cache):
    headers = {} if authorization is None else {"Authorization": authorization}

    body = {"recipient_phone_number": PHONE, "content": "x"}
    response = token_client.open(path, method=method, headers=headers, json=body)

    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert cache.get(keys.ENABLED) is None  # start and stop did nothing


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_right_token_opens_every_call(token_client, make_message, scheme):
    client = token_client
    headers = {"Authorization": f"{scheme} {TOKEN}"}
    failed = make_message(sending_status=Status.FAILED)

    assert client.get("/messaging/status", headers=headers).status_code == 200
    assert client.post("/messaging/stop", headers=headers).status_code == 200
    assert client.get("/messaging/sent", headers=headers).status_code == 200
    assert client.get("/messaging/failed", headers=headers).status_code == 200
    body = {"recipient_phone_number": PHONE, "content": "x"}
    created = client.post("/messaging/messages", headers=headers, json=body)
    assert created.status_code == 201
    assert client.get(f"/messaging/messages/{created.get_json()['id']}", headers=headers).status_code == 200
    assert client.post(f"/messaging/messages/{failed}/retry", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "path", ["/health", "/ready", "/metrics", "/docs", "/openapi.json", "/docs/assets/swagger-ui.css"]
)
def test_health_metrics_and_docs_stay_open_with_api_token_set(token_client, path):
    assert token_client.get(path).status_code == 200


def test_without_api_token_the_api_is_open(client):
    assert client.get("/messaging/status").status_code == 200
    assert client.get("/messaging/status", headers={"Authorization": "Bearer anything"}).status_code == 200


def test_the_token_is_compared_in_constant_time(make_app, monkeypatch):
    import api.auth

    compared = []
    real = api.auth.hmac.compare_digest
    monkeypatch.setattr(api.auth.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    client = make_app(api_token=TOKEN).test_client()

    client.get("/messaging/status", headers={"Authorization": "Bearer guess"})

    assert compared == [(b"guess", TOKEN.encode())]


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


# --- OpenAPI and Swagger UI --------------------------------------------------------------

CALLS = {
    ("post", "/messaging/start"),
    ("post", "/messaging/stop"),
    ("get", "/messaging/status"),
    ("get", "/messaging/sent"),
    ("get", "/messaging/failed"),
    ("post", "/messaging/messages"),
    ("get", "/messaging/messages/{message_id}"),
    ("post", "/messaging/messages/{message_id}/retry"),
    ("post", "/messaging/messages/{message_id}/cancel"),
    ("get", "/messaging/messages/{message_id}/attempts"),
    ("post", "/messaging/failed/retry"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
}
ERRORS_BY_CALL = {
    ("post", "/messaging/start"): {"401", "413", "503"},
    ("post", "/messaging/stop"): {"401", "413", "503"},
    ("get", "/messaging/status"): {"401", "503"},
    ("get", "/messaging/sent"): {"400", "401", "503"},
    ("get", "/messaging/failed"): {"400", "401", "503"},
    ("post", "/messaging/messages"): {"401", "413", "422", "503"},
    ("get", "/messaging/messages/{message_id}"): {"401", "404", "503"},
    ("post", "/messaging/messages/{message_id}/retry"): {"401", "404", "409", "413", "503"},
    ("post", "/messaging/messages/{message_id}/cancel"): {"401", "404", "409", "413", "503"},
    ("get", "/messaging/messages/{message_id}/attempts"): {"400", "401", "404", "503"},
    ("post", "/messaging/failed/retry"): {"401", "413", "422", "503"},
}


@pytest.fixture
def document(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


def operations(document: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_the_document_is_openapi_3_with_every_call(document):
    assert document["openapi"].startswith("3.")
    assert set(operations(document)) == CALLS
    assert document["info"]["title"] and document["info"]["description"]


def test_each_messaging_call_documents_its_success_errors_auth_and_examples(document):
    for call, operation in operations(document).items():
        if not call[1].startswith("/messaging/"):
            assert "security" not in operation, call
            continue
        assert operation["security"] == [{"bearerAuth": []}], call
        assert operation.get("summary"), call
        errors = {status for status in operation["responses"] if status.startswith(("4", "5"))}
        assert errors == ERRORS_BY_CALL[call], call
        for status in errors:
            content = operation["responses"][status]["content"]["application/json"]
            # GET /messaging/sent may answer in the Go service's shape too (tests/integration/test_api_seed.py).
            schema = content["schema"]["oneOf"][0] if call == ("get", "/messaging/sent") else content["schema"]
            assert schema == {"$ref": "#/components/schemas/ApiError"}, (call, status)
            assert content["example"]["error"]["code"], (call, status)
        assert "default" not in operation["responses"], call
    assert "security" not in document  # the open endpoints are open


def test_the_documented_body_is_the_schema_that_validates_it(document):
    operation = operations(document)[("post", "/messaging/messages")]
    body = operation["requestBody"]["content"]["application/json"]
    new = document["components"]["schemas"]["NewMessage"]

    assert body["schema"] == {"$ref": "#/components/schemas/NewMessage"}
    assert body["examples"]["now"]["value"] == {"recipient_phone_number": PHONE, "content": "Your verification code is 482913."}
    assert set(body["examples"]["scheduled"]["value"]) == {"recipient_phone_number", "content", "send_at"}
    assert sorted(new["required"]) == ["content", "recipient_phone_number"]
    assert new["additionalProperties"] is False
    assert new["properties"]["content"]["maxLength"] == 160 and new["properties"]["content"]["minLength"] == 1
    assert re.fullmatch(new["properties"]["recipient_phone_number"]["pattern"], PHONE)
    assert not re.fullmatch(new["properties"]["recipient_phone_number"]["pattern"], "+0123456789")


def test_the_paging_parameters_and_answer_are_documented(document):
    for path in ("/messaging/sent", "/messaging/failed"):
        operation = operations(document)[("get", path)]
        parameters = {p["name"]: p for p in operation["parameters"] if p["name"] != "format"}
        assert set(parameters) == {"limit", "offset", "cursor"}
        limit = {key: value for key, value in parameters["limit"]["schema"].items() if key != "example"}
        assert limit == {"type": "integer", "default": 20, "minimum": 1, "maximum": 100}
        assert parameters["offset"]["schema"]["minimum"] == 0
        assert re.fullmatch(parameters["cursor"]["schema"]["pattern"], cursors.encode(cursors.Offset(40), "sent"))
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema.get("oneOf", [schema])[0] == {"$ref": "#/components/schemas/MessagePage"}
    pagination = document["components"]["schemas"]["Pagination"]
    assert set(pagination["properties"]) == set(pagination["required"]) == {"limit", "offset", "total", "next_cursor"}


def test_swagger_try_it_out_on_one_message_finds_it_in_the_demo_data(client, document, database_url):
    migrations.load_demo_data(database_url)
    [parameter] = document["paths"]["/messaging/messages/{message_id}"]["parameters"]

    response = client.get(f"/messaging/messages/{parameter['schema']['example']}")

    assert response.status_code == 200, response.get_json()


def test_the_documented_answers_of_create_and_retry_show_a_pending_message(document):
    for call, status in ((("post", "/messaging/messages"), "201"), (("post", "/messaging/messages/{message_id}/retry"), "200")):
        example = operations(document)[call]["responses"][status]["content"]["application/json"]["example"]
        assert set(example) == MESSAGE_FIELDS, call
        assert (example["status"], example["attempts"], example["sent_at"]) == ("pending", 0, None), call
        assert (example["webhook_message_id"], example["last_error"]) == (None, None), call


def test_every_message_field_is_documented_as_always_present(document):
    message = document["components"]["schemas"]["Message"]

    assert set(message["properties"]) == set(message["required"]) == MESSAGE_FIELDS
    assert message["properties"]["status"]["enum"] == ["pending", "sent", "failed", "sending", "canceled"]
    assert all("example" in spec for spec in message["properties"].values())


def test_swagger_ui_is_served_from_local_assets_only(client):
    page = client.get("/docs")

    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "a CDN or other external URL"
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert {"/docs/assets/swagger-ui.css", "/docs/assets/swagger-ui-bundle.js"} <= set(assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.get_data()) > 1000, asset
    assert "/openapi.json" in html


def test_a_large_total_is_counted_once_per_period_and_a_small_one_exactly(client, db, monkeypatch):
    from messaging.redis import shared_counts

    monkeypatch.setattr(shared_counts, "EXACT_TOTAL_UP_TO", 3)
    db.execute(
        "INSERT INTO messages (content, recipient_phone_number, sending_status, sent_at) "
        "SELECT 'm' || g, '+90532' || lpad(g::text, 7, '0'), 1, now() FROM generate_series(1, 3) AS g"
    )
    assert client.get("/messaging/sent").get_json()["pagination"]["total"] == 3
    db.execute("INSERT INTO messages (content, recipient_phone_number, sending_status, sent_at) VALUES ('x', '+905320000099', 1, now())")
    assert client.get("/messaging/sent").get_json()["pagination"]["total"] == 4
    db.execute("INSERT INTO messages (content, recipient_phone_number, sending_status, sent_at) VALUES ('y', '+905320000098', 1, now())")
    assert client.get("/messaging/sent").get_json()["pagination"]["total"] == 4, "kept for TOTAL_MAX_AGE_SECONDS"


def test_once_a_large_total_stands_a_page_skips_the_capped_count(client, db, monkeypatch):
    from messaging.redis import shared_counts

    monkeypatch.setattr(shared_counts, "EXACT_TOTAL_UP_TO", 3)
    db.execute(
        "INSERT INTO messages (content, recipient_phone_number, sending_status, sent_at) "
        "SELECT 'm' || g, '+90532' || lpad(g::text, 7, '0'), 1, now() FROM generate_series(1, 7) AS g"
    )
    assert client.get("/messaging/sent").get_json()["pagination"]["total"] == 7
    counted = []
    real = Records.count_in_status

    def noted(records, status, *, up_to=None):
        counted.append(up_to)
        return real(records, status, up_to=up_to)

    monkeypatch.setattr(Records, "count_in_status", noted)
    for _ in range(3):
        assert client.get("/messaging/sent").get_json()["pagination"]["total"] == 7
    assert counted == [], "7 is over twice the exact limit: the remembered total serves without counting"
