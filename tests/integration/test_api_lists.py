"""GET /messaging/sent and /messaging/failed: pages, cursors, totals and bad queries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest

from api import cursors
from messaging.domain.message import Status
from messaging.postgres.records import Records
from tests.integration.api_support import (
    ISO_UTC,
    MESSAGE_FIELDS,
    T0,
    cursor_key,
    error_of,
    operations,
)

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
            "delivery_status": None,
            "delivered_at": None,
            "error_code": None,
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
    ("offset=10001", "offset"),
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
        cursors.Offset(10_000),
    ],
    ids=["epoch", "far-past", "far-future", "deepest-offset"],
)
def test_a_cursor_the_api_issued_answers_a_page_at_any_depth(client, make_message, cursor):
    make_listed(make_message, "/messaging/sent", T0)

    response = client.get(f"/messaging/sent?cursor={cursors.encode(cursor, 'sent', cursor_key(client))}")

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


@LISTS
def test_offset_goes_to_10000_and_deeper_pages_are_pointed_to_cursors(client, make_message, path):
    make_listed(make_message, path, T0)

    assert client.get(f"{path}?offset=10000").status_code == 200
    response = client.get(f"{path}?offset=10001")

    assert response.status_code == 400
    assert "cursor" in error_of(response)["fields"]["offset"][0]


@LISTS
def test_an_offset_cursor_has_the_same_cap(client, make_message, path):
    make_listed(make_message, path, T0)
    listing = path.rsplit("/", 1)[1]

    deepest = cursors.encode(cursors.Offset(10_000), listing, cursor_key(client))
    beyond = cursors.encode(cursors.Offset(10_001), listing, cursor_key(client))

    assert client.get(f"{path}?cursor={deepest}").status_code == 200
    response = client.get(f"{path}?cursor={beyond}")
    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["cursor"]
