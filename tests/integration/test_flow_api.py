"""What an operator sees of flow control: the breaker and the rate limit in GET /messaging/status
and /metrics, and POST /messaging/start closing an open breaker by hand."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime

import pytest

from api import close_app, create_app
from messaging.delivery.ports import Verdict
from messaging.redis.flow import RedisFlowControl
from tests.integration.api_support import scrape


@pytest.fixture
def settings(base_settings):
    return replace(
        base_settings, rate_limit_per_second=50, rate_limit_burst=5, breaker_min_calls=3, breaker_open_seconds=30
    )


@pytest.fixture
def app(settings):
    built = create_app(settings)
    yield built
    close_app(built)


def open_breaker(app) -> None:
    """Three failures, recorded as the workers record them: the breaker opens."""
    opened = app.extensions["messaging.runtime"]
    control = RedisFlowControl(opened.redis, opened.settings)
    for _ in range(3):
        control.record(control.admit(uuid.uuid4(), clear=False), Verdict.FAILING, why="HTTP 503 Service Unavailable")


def test_status_shows_a_closed_breaker_and_the_rate_limit(app):
    body = app.test_client().get("/messaging/status").get_json()
    assert body["breaker"] == {"state": "closed", "since": None, "why": None, "reopens_at": None}
    assert body["rate_limit"] == {"per_second": 50.0, "burst": 5, "paused_until": None}


def test_status_shows_an_open_breaker_since_when_and_why(app):
    open_breaker(app)
    breaker = app.test_client().get("/messaging/status").get_json()["breaker"]
    assert breaker["state"] == "open"
    assert breaker["why"] == "3 of 3 deliveries in the last 300s failed; last: HTTP 503 Service Unavailable"
    since, reopens = datetime.fromisoformat(breaker["since"]), datetime.fromisoformat(breaker["reopens_at"])
    assert (reopens - since).total_seconds() == pytest.approx(30, abs=0.01)


def test_status_shows_a_providers_pause(app):
    opened = app.extensions["messaging.runtime"]
    RedisFlowControl(opened.redis, opened.settings).pause(60, why="HTTP 429 Too Many Requests")
    rate_limit = app.test_client().get("/messaging/status").get_json()["rate_limit"]
    assert datetime.fromisoformat(rate_limit["paused_until"]).tzinfo is not None


def test_start_closes_an_open_breaker_by_hand_and_says_so_once(app, caplog):
    open_breaker(app)
    client = app.test_client()
    with caplog.at_level(logging.INFO):
        answer = client.post("/messaging/start").get_json()
        client.post("/messaging/start")
    assert "circuit breaker" in answer["message"]
    breaker = client.get("/messaging/status").get_json()["breaker"]
    assert (breaker["state"], breaker["why"]) == ("closed", "closed by hand (POST /messaging/start)")
    assert sum("event=breaker_closed" in r.getMessage() for r in caplog.records) == 1


def test_metrics_export_the_breaker_and_the_rate_limit(app):
    client = app.test_client()
    before = scrape(client)
    assert before[("messaging_breaker_state", (("state", "closed"),))] == 1
    assert before[("messaging_breaker_state", (("state", "open"),))] == 0
    assert before[("messaging_rate_limit_per_second", ())] == 50
    assert before[("messaging_rate_limit_burst", ())] == 5
    open_breaker(app)
    after = scrape(client)
    assert after[("messaging_breaker_state", (("state", "open"),))] == 1
    assert after[("messaging_breaker_transitions_total", (("to", "open"),))] == 1
    assert after[("messaging_provider_paused_seconds", ())] == 0
