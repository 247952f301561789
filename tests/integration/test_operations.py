"""Running it like production, in-process: /health, /ready, /metrics, log lines and beat's heartbeat.
The liveness commands compose runs, and Flower, run as processes in tests/e2e/test_liveness.py."""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from prometheus_client.openmetrics import parser as openmetrics_parser

from api import close_app, create_app
from messaging.ops import metrics
from messaging.redis.shared_counts import Remembered, StatusCounts
from messaging.settings import Settings
from tests.helpers import wait_for
from tests.integration.api_support import scrape
from worker import tasks
from worker.beat import HEARTBEAT_ENV, HeartbeatScheduler
from worker.factory import create_celery_app

DOWN_REDIS = "redis://127.0.0.1:1/0"
DOWN_POSTGRESQL = "postgresql://postgres@127.0.0.1:1/x"
SENT, FAILED = 1, 2


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return replace(base_settings, send_batch_size=10)


@pytest.fixture
def api(settings: Settings) -> Iterator[Callable[..., FlaskClient]]:
    """`api(**changes)`: a test client of the real app built from the settings with those changes."""
    apps = []

    def make(**changes) -> FlaskClient:
        app = create_app(replace(settings, **changes))
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        close_app(app)


def count(db, status: int) -> int:
    return db.execute("SELECT count(*) AS n FROM messages WHERE sending_status = %s", (status,)).fetchone()["n"]


# ---------------------------------------------------------------- /health and /ready


def test_health_answers_while_the_process_lives_even_with_every_dependency_down(api):
    answer = api(database_url=DOWN_POSTGRESQL, redis_url=DOWN_REDIS).get("/health")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ok"}


def test_ready_answers_200_when_postgresql_and_redis_answer(api):
    answer = api().get("/ready")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ready", "checks": {"postgresql": "ok", "redis": "ok"}}


@pytest.mark.parametrize(
    ("down", "change", "up"),
    [("redis", {"redis_url": DOWN_REDIS}, "postgresql"), ("postgresql", {"database_url": DOWN_POSTGRESQL}, "redis")],
)
def test_ready_answers_503_naming_the_dependency_that_is_unreachable(api, down, change, up):
    answer = api(**change).get("/ready")
    assert answer.status_code == 503
    assert answer.content_type == "application/json"
    body = answer.get_json()
    assert body["status"] == f"unavailable: {down}"
    assert body["checks"] == {down: "down", up: "ok"}


def test_ready_names_both_when_both_are_unreachable(api):
    answer = api(database_url=DOWN_POSTGRESQL, redis_url=DOWN_REDIS).get("/ready")
    assert answer.status_code == 503
    assert answer.get_json()["status"] == "unavailable: postgresql, redis"


def test_ready_without_a_token_names_what_is_down_and_nothing_of_the_drivers_words(api):
    answer = api(database_url=DOWN_POSTGRESQL, redis_url=DOWN_REDIS, api_token="s3cret").get(
        "/ready", headers={"Authorization": "Bearer wrong"}
    )

    assert answer.status_code == 503
    assert answer.get_json() == {
        "status": "unavailable: postgresql, redis",
        "checks": {"postgresql": "down", "redis": "down"},
    }


def test_ready_with_the_api_token_gives_the_reason_too(api):
    answer = api(redis_url=DOWN_REDIS, api_token="s3cret").get("/ready", headers={"Authorization": "Bearer s3cret"})

    assert answer.status_code == 503
    assert answer.get_json()["checks"]["redis"].startswith("down: redis is unavailable: ")
    assert "127.0.0.1:1" in answer.get_json()["checks"]["redis"]


def test_health_ready_and_metrics_stay_open_when_an_api_token_is_set(api):
    client = api(api_token="s3cret")
    assert client.get("/messaging/status").status_code == 401
    for path in ("/health", "/ready", "/metrics"):
        assert client.get(path).status_code == 200, path


# ---------------------------------------------------------------- /metrics


def test_metrics_after_real_deliveries_show_statuses_outcomes_latency_and_batches(
    api, celery_worker, make_message, receiver, db
):
    for _ in range(2):
        make_message()
    tasks.run_batch.delay()
    wait_for(lambda: count(db, SENT) == 2, what="two messages sent")

    receiver.set_behaviour(status=400)  # a permanent failure
    make_message()
    tasks.run_batch.delay()
    wait_for(lambda: count(db, FAILED) == 1, what="one message failed")
    make_message()  # left pending

    samples = scrape(api())
    assert samples[("messaging_messages", (("status", "sent"),))] == 2
    assert samples[("messaging_messages", (("status", "failed"),))] == 1
    assert samples[("messaging_messages", (("status", "pending"),))] == 1
    assert samples[("messaging_messages", (("status", "sending"),))] == 0

    assert samples[("messaging_deliveries_total", (("outcome", "sent"),))] == 2
    assert samples[("messaging_deliveries_total", (("outcome", "failed"),))] == 1

    assert samples[("messaging_webhook_latency_seconds_count", ())] == 3
    assert samples[("messaging_webhook_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert 0 < samples[("messaging_webhook_latency_seconds_sum", ())] < 3 * 2.0  # the webhook timeout is 2 s
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "messaging_webhook_latency_seconds_bucket"
    )
    assert len(buckets) == 13
    assert [value for _, value in buckets] == sorted(value for _, value in buckets), "cumulative buckets"

    assert samples[("messaging_batches_total", ())] == 2
    assert samples[("messaging_batch_claimed_total", ())] == 3
    assert samples[("messaging_claims_recovered_total", ())] == 0
    assert samples[("messaging_dependency_up", (("dependency", "postgresql"),))] == 1
    assert samples[("messaging_dependency_up", (("dependency", "redis"),))] == 1


def test_metrics_answer_with_redis_down_and_say_so(api):
    samples = scrape(api(redis_url=DOWN_REDIS))
    assert samples[("messaging_dependency_up", (("dependency", "redis"),))] == 0
    assert samples[("messaging_dependency_up", (("dependency", "postgresql"),))] == 1
    assert ("messaging_messages", (("status", "pending"),)) in samples
    assert not any(name.startswith("messaging_deliveries") for name, _ in samples)


def test_metrics_speak_openmetrics_to_a_scraper_that_asks_for_it(runtime, make_message):
    make_message()
    counts = StatusCounts(runtime.records, Remembered(runtime.redis))
    body, content_type = metrics.render(runtime.pool, runtime.redis, counts, runtime.settings, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    families = {family.name: family for family in openmetrics_parser.text_string_to_metric_families(text)}
    assert families["messaging_messages"].type == "gauge"
    assert families["messaging_deliveries"].type == "counter"
    assert families["messaging_webhook_latency_seconds"].type == "histogram"


# ---------------------------------------------------------------- log lines


def delivery_lines(caplog) -> list[dict[str, str]]:
    """The `event=delivery` lines, each parsed as key=value pairs (quoted values allowed)."""
    parsed = []
    for record in caplog.records:
        text = record.getMessage()
        if text.startswith("event=delivery "):
            assert "\n" not in text, "one line per event"
            parsed.append(dict(pair.split("=", 1) for pair in shlex.split(text)))
    return parsed


def test_delivery_log_lines_parse_as_key_value_and_never_show_the_auth_key(
    celery_worker, make_message, receiver, db, settings, caplog
):
    caplog.set_level(logging.INFO)
    sent_id = make_message()
    tasks.run_batch.delay()
    wait_for(lambda: count(db, SENT) == 1, what="the delivery")

    receiver.set_behaviour(status=503)  # transient: back to pending, retried later
    retried_id = make_message()
    tasks.run_batch.delay()
    wait_for(lambda: db.execute("SELECT attempts FROM messages WHERE id = %s", (retried_id,)).fetchone()["attempts"] == 1,
             what="the failed attempt to be recorded")
    wait_for(lambda: len(delivery_lines(caplog)) == 2, what="two delivery log lines")

    by_id = {line["message_id"]: line for line in delivery_lines(caplog)}
    sent, retried = by_id[str(sent_id)], by_id[str(retried_id)]
    assert sent["event"] == "delivery" and sent["outcome"] == "sent" and sent["attempt"] == "1"
    assert retried["outcome"] == "retry_later" and retried["attempt"] == "1"
    assert retried["error"] == "HTTP 503 Service Unavailable"
    for line in (sent, retried):
        assert float(line["duration_ms"]) > 0

    assert settings.webhook_auth_key == "test-secret-key"
    assert receiver.deliveries()[0]["headers"]["x-ins-auth-key"] == settings.webhook_auth_key
    assert settings.webhook_auth_key not in caplog.text
    assert all(settings.webhook_auth_key not in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------- beat's heartbeat


def test_the_scheduler_touches_its_heartbeat_on_every_tick_and_removes_it_on_close(settings, tmp_path, monkeypatch):
    heartbeat = tmp_path / "beat" / "heartbeat"
    monkeypatch.setenv(HEARTBEAT_ENV, str(heartbeat))
    scheduler = HeartbeatScheduler(app=create_celery_app(settings))
    scheduler.tick()  # the first tick after start: nothing due yet, so nothing is sent
    assert heartbeat.exists() and time.time() - heartbeat.stat().st_mtime < 5
    scheduler.close()
    assert not heartbeat.exists()


def test_metrics_count_the_failovers_each_process_saw(api, runtime):
    """The alert rules page on this counter: every process adds one per failover it finds."""
    samples = scrape(api())
    assert samples[("messaging_failovers_total", (("dependency", "postgresql"),))] == 0
    runtime.counters.failover("postgresql")
    runtime.counters.failover("redis")
    runtime.counters.failover("redis")
    samples = scrape(api())
    assert samples[("messaging_failovers_total", (("dependency", "postgresql"),))] == 1
    assert samples[("messaging_failovers_total", (("dependency", "redis"),))] == 2
