"""The OpenAPI document and Swagger UI: every call documented, every example a real answer."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from api import cursors
from messaging.postgres import migrations
from tests.integration.api_support import (
    MESSAGE_FIELDS,
    PHONE,
    operations,
)

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
    ("get", "/messaging/messages/{message_id}/events"),
    ("post", "/messaging/failed/retry"),
    ("post", "/messaging/callbacks/retry"),
    ("post", "/messaging/receipts"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
}
ERRORS_BY_CALL = {
    ("post", "/messaging/start"): {"401", "403", "413", "503"},
    ("post", "/messaging/stop"): {"401", "403", "413", "503"},
    ("get", "/messaging/status"): {"401", "403", "503"},
    ("get", "/messaging/sent"): {"400", "401", "403", "503"},
    ("get", "/messaging/failed"): {"400", "401", "403", "503"},
    ("post", "/messaging/messages"): {"401", "403", "413", "422", "503"},
    ("get", "/messaging/messages/{message_id}"): {"401", "403", "404", "503"},
    ("post", "/messaging/messages/{message_id}/retry"): {"401", "403", "404", "409", "413", "503"},
    ("post", "/messaging/messages/{message_id}/cancel"): {"401", "403", "404", "409", "413", "503"},
    ("get", "/messaging/messages/{message_id}/attempts"): {"400", "401", "403", "404", "503"},
    ("post", "/messaging/failed/retry"): {"401", "403", "413", "422", "503"},
    ("post", "/messaging/callbacks/retry"): {"401", "403", "413", "422", "503"},
    ("get", "/messaging/messages/{message_id}/events"): {"401", "403", "404", "503"},
    ("post", "/messaging/receipts"): {"401", "403", "404", "413", "422", "503"},
}
# Signed by the provider with RECEIPT_SIGNING_SECRET instead of the bearer token.
SIGNED_CALLS = {("post", "/messaging/receipts")}


def test_the_document_is_openapi_3_with_every_call(document):
    assert document["openapi"].startswith("3.")
    assert set(operations(document)) == CALLS
    assert document["info"]["title"] and document["info"]["description"]


def test_each_messaging_call_documents_its_success_errors_auth_and_examples(document):
    for call, operation in operations(document).items():
        if not call[1].startswith("/messaging/"):
            assert "security" not in operation, call
            continue
        assert operation["security"] == ([] if call in SIGNED_CALLS else [{"bearerAuth": []}]), call
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


def test_swagger_try_it_out_with_each_body_example_creates_a_message(client, document):
    """The scheduled example's send_at is computed, not written as a date: it is never refused as stale."""
    examples = operations(document)[("post", "/messaging/messages")]["requestBody"]["content"]["application/json"]["examples"]

    for name, example in examples.items():
        response = client.post("/messaging/messages", json=example["value"])
        assert response.status_code == 201, (name, response.get_json())


def test_the_paging_parameters_and_answer_are_documented(document):
    for path in ("/messaging/sent", "/messaging/failed"):
        operation = operations(document)[("get", path)]
        parameters = {p["name"]: p for p in operation["parameters"] if p["name"] != "format"}
        assert set(parameters) == {"limit", "offset", "cursor"} | ({"delivery_status"} if path.endswith("sent") else set())
        limit = {key: value for key, value in parameters["limit"]["schema"].items() if key != "example"}
        assert limit == {"type": "integer", "default": 20, "minimum": 1, "maximum": 100}
        assert (parameters["offset"]["schema"]["minimum"], parameters["offset"]["schema"]["maximum"]) == (0, 10_000)
        assert re.fullmatch(parameters["cursor"]["schema"]["pattern"], cursors.encode(cursors.Offset(40), "sent", "k"))
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema.get("oneOf", [schema])[0] == {"$ref": "#/components/schemas/MessagePage"}
    pagination = document["components"]["schemas"]["Pagination"]
    assert set(pagination["properties"]) == set(pagination["required"]) == {"limit", "offset", "total", "next_cursor"}


@pytest.mark.parametrize("call", sorted(CALLS - SIGNED_CALLS), ids=" ".join)
def test_swagger_try_it_out_with_its_examples_gives_a_real_answer_on_the_demo_data(call, client, document, database_url):
    """What Swagger UI sends, every example filled in, on what `make run` loads: 2xx, and never an empty list."""
    migrations.load_demo_data(database_url)

    for url, body in tried_out(document, call):
        response = client.open(url, method=call[0].upper(), json=body)

        assert 200 <= response.status_code < 300, (url, body, response.get_data(as_text=True)[:500])
        if response.is_json:
            assert not empty_parts(response.get_json()), (url, body, response.get_json())


def test_swagger_try_it_out_on_the_attempts_of_a_message_lists_some_in_the_demo_data(client, document, database_url):
    migrations.load_demo_data(database_url)
    [url] = [url for url, _ in tried_out(document, ("get", "/messaging/messages/{message_id}/attempts"))]

    attempts = client.get(url).get_json()["data"]

    assert [attempt["attempt"] for attempt in attempts] == [1, 2], attempts
    message = client.get(url.rsplit("/", 1)[0]).get_json()
    assert (message["status"], message["attempts"]) == ("failed", 2), "the demo message agrees with its attempts"


def test_swagger_try_it_out_on_the_events_of_a_message_lists_a_receipt_and_callbacks_in_the_demo_data(
    client, document, database_url
):
    """Under `make run` status callbacks are off: the demo data holds the events, written as the service would."""
    migrations.load_demo_data(database_url)
    [url] = [url for url, _ in tried_out(document, ("get", "/messaging/messages/{message_id}/events"))]

    events = client.get(url).get_json()

    assert [(r["status"], r["outcome"]) for r in events["data"]] == [("delivered", "applied")], events
    assert [e["type"] for e in events["callbacks"]] == ["message.sent", "message.delivered"], events
    assert {e["callback_state"] for e in events["callbacks"]} == {"delivered"}, "a dispatcher never POSTs them"
    message = client.get(url.rsplit("/", 1)[0]).get_json()
    assert (message["status"], message["delivery_status"]) == ("sent", "delivered"), "the message agrees"


def tried_out(document: dict, call: tuple[str, str]) -> list[tuple[str, object]]:
    """The URL and body of each request Swagger UI's Try it out makes for a call with its examples as they are."""
    path = call[1]
    operation = operations(document)[call]
    parameters = [*document["paths"][path].get("parameters", []), *operation.get("parameters", [])]
    query = {}
    for parameter in parameters:
        example = parameter.get("example", parameter["schema"].get("example"))
        if example is None:
            continue
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", str(example))
        elif parameter["in"] == "query":
            query[parameter["name"]] = example
    assert "{" not in path, f"{call}: a path parameter without an example"
    url = f"{path}?{urlencode(query)}" if query else path
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if "example" in content:
        return [(url, content["example"])]
    return [(url, example["value"]) for example in content.get("examples", {}).values()] or [(url, None)]


def empty_parts(answer: object) -> list[str]:
    """What in an answer is empty: the answer, a list in it, or a bulk retry that retried nothing."""
    if isinstance(answer, list):
        return [] if answer else ["the answer"]
    if not isinstance(answer, dict):
        return []
    empty = [name for name, value in answer.items() if isinstance(value, list) and not value]
    return empty + (["retried"] if answer.get("retried") == 0 else [])


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
