"""The bearer token: off by default, and when set, every /messaging call needs it."""

from __future__ import annotations

from uuid import uuid4

import pytest

from messaging.domain.message import Status
from messaging.redis import keys
from tests.integration.api_support import (
    PHONE,
    TOKEN,
    error_of,
)

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
