"""GET /messaging/sent in the Go service's shape (SENT_RESPONSE_FORMAT=seed), for the clients it had."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from messaging.domain.message import Status

T0 = datetime(2024, 12, 22, 9, 13, 47, tzinfo=timezone.utc)
SEED_FIELDS = {"ID", "Content", "RecipientPhoneNumber", "SendingStatus", "CreatedAt", "UpdatedAt"}
TOKEN = "seed-token"


@pytest.fixture
def seed_client(make_app):
    return make_app(sent_response_format="seed").test_client()


@pytest.fixture
def standard_client(make_app):
    return make_app().test_client()


def seed_error_of(response) -> str:
    assert response.status_code == 400 and response.is_json, response.data[:200]
    body = response.get_json()
    assert set(body) == {"success", "error"} and body["success"] is False
    return body["error"]


def test_the_sent_list_is_a_bare_array_with_the_go_field_names_and_formats(seed_client, make_message):
    sent_at = T0 + timedelta(minutes=2, microseconds=500_000)
    message_id = make_message(
        content="Hello", sending_status=Status.SENT, created_at=T0, updated_at=sent_at, sent_at=sent_at
    )
    make_message(sending_status=Status.PENDING)

    response = seed_client.get("/messaging/sent?limit=10&offset=0")

    assert response.status_code == 200
    assert response.get_json() == [
        {
            "ID": str(message_id),
            "Content": "Hello",
            "RecipientPhoneNumber": "+905320000000",
            "SendingStatus": 1,
            "CreatedAt": "2024-12-22T09:13:47Z",
            "UpdatedAt": "2024-12-22T09:15:47.5Z",
        }
    ]


def test_it_pages_newest_sent_first_by_limit_and_offset(seed_client, make_message):
    ids = [
        str(make_message(sending_status=Status.SENT, sent_at=T0 + timedelta(minutes=minute), created_at=T0))
        for minute in range(5)
    ]
    first = seed_client.get("/messaging/sent?limit=2").get_json()
    second = seed_client.get("/messaging/sent?limit=2&offset=2").get_json()
    last = seed_client.get("/messaging/sent?limit=100&offset=4").get_json()
    assert [m["ID"] for m in first + second + last] == ids[::-1]
    assert all(set(m) == SEED_FIELDS for m in first)
    assert seed_client.get("/messaging/sent?limit=100&offset=5").get_json() == []


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("", "limit: Missing data for required field."),
        ("?offset=0", "limit: Missing data for required field."),
        ("?limit=0", "limit: Must be greater than or equal to 1 and less than or equal to 100."),
        ("?limit=101", "limit: Must be greater than or equal to 1"),
        ("?limit=ten", "limit: Not a valid integer."),
        ("?limit=10&offset=-1", "offset: Must be greater than or equal to 0"),
        ("?limit=10&offset=10001", "offset: Must be at most 10,000. For deeper pages follow pagination.next_cursor"),
        ("?limit=10&format=xml", "format: Must be one of: standard, seed."),
    ],
)
def test_bad_paging_answers_400_as_the_go_service_did(seed_client, query, says):
    assert says in seed_error_of(seed_client.get(f"/messaging/sent{query}"))


def test_format_standard_gives_the_standard_shape_and_format_seed_the_go_one(seed_client, standard_client, make_message):
    make_message(sending_status=Status.SENT, sent_at=T0)
    standard = seed_client.get("/messaging/sent?format=standard").get_json()
    assert set(standard) == {"data", "pagination"} and standard["pagination"]["limit"] == 20
    assert "error" in standard_client.get("/messaging/sent?limit=0").get_json(), "the setting's default is standard"
    answer = standard_client.get("/messaging/sent?format=seed&limit=5").get_json()
    assert isinstance(answer, list) and set(answer[0]) == SEED_FIELDS
    assert seed_error_of(standard_client.get("/messaging/sent?format=seed")).endswith("limit: Missing data for required field.")


def test_only_the_sent_list_changes_shape(seed_client, make_message):
    make_message(sending_status=Status.FAILED)
    assert set(seed_client.get("/messaging/failed?limit=1").get_json()) == {"data", "pagination"}
    assert set(seed_client.get("/messaging/failed?limit=0").get_json()) == {"error"}
    assert set(seed_client.get("/messaging/status").get_json()["counts"]) == {"pending", "sending", "sent", "failed", "canceled"}
    assert set(seed_client.post("/messaging/sent").get_json()) == {"error"}, "405: not the GET call"


def test_start_and_stop_keep_the_go_services_message_field(seed_client):
    for path, enabled in (("/messaging/stop", False), ("/messaging/start", True)):
        body = seed_client.post(path).get_json()
        assert body["enabled"] is enabled and isinstance(body["message"], str) and body["message"]


def test_a_refused_token_and_an_unreachable_database_answer_in_the_go_shape(make_app):
    guarded = make_app(sent_response_format="seed", api_token=TOKEN).test_client()
    refused = guarded.get("/messaging/sent?limit=1")
    assert refused.status_code == 401 and refused.get_json()["success"] is False
    assert guarded.get("/messaging/sent?limit=1", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200

    down = make_app(sent_response_format="seed", database_url="postgresql://postgres@127.0.0.1:1/x").test_client()
    answer = down.get("/messaging/sent?limit=1")
    assert answer.status_code == 503
    assert answer.get_json() == {"success": False, "error": answer.get_json()["error"]}
    assert answer.get_json()["error"].startswith("postgresql is unavailable")


def test_the_document_describes_both_shapes_of_the_sent_list(standard_client):
    document = standard_client.get("/openapi.json").get_json()
    operation = document["paths"]["/messaging/sent"]["get"]
    schema_of = lambda status: operation["responses"][status]["content"]["application/json"]["schema"]  # noqa: E731
    assert schema_of("200") == {
        "oneOf": [
            {"$ref": "#/components/schemas/MessagePage"},
            {"type": "array", "items": {"$ref": "#/components/schemas/SeedMessage"}},
        ]
    }
    for status in ("400", "401", "503"):
        assert schema_of(status) == {
            "oneOf": [{"$ref": "#/components/schemas/ApiError"}, {"$ref": "#/components/schemas/SeedError"}]
        }
    seed_message = document["components"]["schemas"]["SeedMessage"]
    assert set(seed_message["properties"]) == set(seed_message["required"]) == SEED_FIELDS
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["format"]["schema"]["enum"] == ["standard", "seed"]
    failed = document["paths"]["/messaging/failed"]["get"]
    assert "format" not in {p["name"] for p in failed["parameters"]}
