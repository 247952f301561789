"""A web page cannot drive the API: a foreign Origin or Sec-Fetch-Site answers 403, a foreign Host 400."""

from __future__ import annotations

import pytest

from messaging.redis import keys
from tests.integration.api_support import error_of

CROSS_SITE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Origin": "https://attacker.example"}


@pytest.mark.parametrize(
    "headers",
    [
        CROSS_SITE,
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://attacker.example"},
    ],
    ids=["browser", "fetch-site-only", "same-site", "origin-only"],
)
def test_a_cross_site_post_to_stop_is_refused_and_sending_stays_enabled(client, cache, headers):
    assert client.post("/messaging/start").status_code == 200

    response = client.post("/messaging/stop", headers=headers)

    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"
    assert cache.get(keys.ENABLED) == "1"
    assert client.get("/messaging/status").get_json()["enabled"] is True


@pytest.mark.parametrize(
    "origin",
    [
        "https://attacker.example",
        "null",
        "http://localhost:8080",
        "https://localhost",
        "http://localhost.attacker.example",
        "x",
    ],
)
def test_a_foreign_origin_cannot_read_the_sent_list(client, origin):
    response = client.get("/messaging/sent", headers={"Origin": origin})

    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"


def test_the_apis_own_pages_and_clients_without_browser_headers_are_served(client):
    # The test client's requests are http://localhost/..., so that is the API's own origin.
    assert client.get("/messaging/sent").status_code == 200
    assert client.get("/messaging/sent", headers={"Origin": "http://localhost"}).status_code == 200
    assert client.get("/messaging/sent", headers={"Origin": "HTTP://LocalHost:80"}).status_code == 200
    own_page = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/messaging/stop", headers=own_page).status_code == 200
    assert client.get("/messaging/status", headers={"Sec-Fetch-Site": "none"}).status_code == 200


def test_a_cross_site_page_may_still_load_health_and_the_docs(client):
    for path in ("/health", "/docs", "/openapi.json"):
        assert client.get(path, headers=CROSS_SITE).status_code == 200, path


@pytest.mark.parametrize(
    "host", ["attacker.example:8080", "attacker.example", "127.0.0.1.attacker.example", "[::2]:8080"]
)
def test_a_dns_rebinding_host_answers_400_on_every_path(client, make_message, host):
    for path in ("/messaging/sent", "/health", "/docs"):
        response = client.get(path, headers={"Host": host})

        assert response.status_code == 400, path
        assert error_of(response)["code"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["[::1]:8080", "localhost:8080", "127.0.0.1", "LOCALHOST.", "[::1]"])
def test_the_loopback_names_are_allowed_at_any_port(client, host):
    assert client.get("/messaging/sent", headers={"Host": host}).status_code == 200


def test_allowed_hosts_adds_names_and_a_star_allows_any(make_app):
    named = make_app(allowed_hosts=("127.0.0.1", "sms.example.com")).test_client()
    assert named.get("/messaging/sent", headers={"Host": "sms.example.com:443"}).status_code == 200
    assert named.get("/messaging/sent", headers={"Host": "other.example.com"}).status_code == 400

    anyone = make_app(allowed_hosts=("127.0.0.1", "*")).test_client()
    assert anyone.get("/messaging/sent", headers={"Host": "other.example.com"}).status_code == 200


def test_a_foreign_page_is_refused_before_the_token_is_asked_for(token_client):
    response = token_client.post("/messaging/stop", headers=CROSS_SITE)

    assert response.status_code == 403
