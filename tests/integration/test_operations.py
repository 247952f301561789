"""Running it like production: /health, /ready, /metrics, log lines, and the liveness checks compose uses."""

from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families

from api import close_app, create_app
from messaging.ops import metrics
from messaging.redis.shared_counts import Remembered, StatusCounts
from messaging.settings import Settings
from tests.helpers import wait_for
from harness.stack import BIN, Stack, environment, free_port, wait_until_up
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


def test_ready_answers_503_naming_redis_when_redis_is_unreachable(api):
    answer = api(redis_url=DOWN_REDIS).get("/ready")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["status"] == "unavailable: redis"
    assert body["checks"]["postgresql"] == "ok"
    assert body["checks"]["redis"] == "down"


def test_ready_answers_503_naming_postgresql_when_postgresql_is_unreachable(api):
    answer = api(database_url=DOWN_POSTGRESQL).get("/ready")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["status"] == "unavailable: postgresql"
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["postgresql"] == "down"
    assert answer.content_type == "application/json"


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


# ---------------------------------------------------------------- beat liveness


def health(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m worker.health ...` as the compose healthcheck runs it."""
    return subprocess.run(
        [sys.executable, "-m", "worker.health", *args],
        capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})},
    )


def test_beat_health_exits_0_for_a_fresh_heartbeat_and_1_for_a_stale_or_missing_one(tmp_path):
    heartbeat = tmp_path / "heartbeat"
    env = {HEARTBEAT_ENV: str(heartbeat)}
    missing = health("beat", env=env)
    assert missing.returncode == 1 and "missing or older than 60s" in missing.stderr

    heartbeat.touch()
    assert health("beat", env=env).returncode == 0

    stale = time.time() - 61
    os.utime(heartbeat, (stale, stale))
    assert health("beat", env=env).returncode == 1
    assert health("beat", "--heartbeat-file", str(heartbeat), "--stale-after", "120").returncode == 0


def test_beat_health_exits_2_on_a_usage_error():
    assert health().returncode == 2
    assert health("worker").returncode == 2


def test_the_scheduler_touches_its_heartbeat_on_every_tick_and_removes_it_on_close(settings, tmp_path, monkeypatch):
    heartbeat = tmp_path / "beat" / "heartbeat"
    monkeypatch.setenv(HEARTBEAT_ENV, str(heartbeat))
    scheduler = HeartbeatScheduler(app=create_celery_app(settings))
    scheduler.tick()  # the first tick after start: nothing due yet, so nothing is sent
    assert heartbeat.exists() and time.time() - heartbeat.stat().st_mtime < 5
    scheduler.close()
    assert not heartbeat.exists()


# ---------------------------------------------------------------- the real processes


@pytest.fixture
def stack(database_url, redis_url, receiver, tmp_path) -> Iterator[Stack]:
    env = environment(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WEBHOOK_URL=receiver.url,
        WEBHOOK_AUTH_KEY="ops-secret-key",
        WEBHOOK_TIMEOUT_SECONDS=2,
        SEND_INTERVAL_SECONDS=0.5,
        SEND_BATCH_SIZE=10,
        AUTO_START="true",
        **{HEARTBEAT_ENV: str(tmp_path / "beat-heartbeat")},
    )
    running = Stack(env, tmp_path)
    yield running
    running.stop(timeout=20)
    print(running.logs())


def celery_cli(stack: Stack, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "celery"), "-A", "worker", *args], env=stack.env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.e2e
def test_the_worker_liveness_command_answers_only_for_a_running_worker(stack):
    worker = stack.worker("liveness")
    node = f"liveness@{socket.gethostname()}"  # what `--hostname=liveness@%h` expands to

    def pong():
        assert worker.alive(), worker.log()
        result = celery_cli(stack, "inspect", "ping", "--destination", node, "--timeout", "5")
        return result if result.returncode == 0 else None

    answer = wait_for(pong, timeout=60, interval=0.5, what=f"{node} to answer inspect ping")
    assert f"{node}: OK" in answer.stdout and "pong" in answer.stdout

    nobody = celery_cli(stack, "inspect", "ping", "--destination", f"nobody@{socket.gethostname()}", "--timeout", "2")
    assert nobody.returncode == 69  # EX_UNAVAILABLE: "No nodes replied within time constraint"

    assert stack.stop(timeout=20) == {"liveness": 0}
    gone = celery_cli(stack, "inspect", "ping", "--destination", node, "--timeout", "2")
    assert gone.returncode != 0


@pytest.mark.e2e
def test_a_running_beat_passes_its_liveness_check_and_a_stopped_one_fails_it(stack):
    beat = stack.beat()  # its heartbeat file is the stack's BEAT_HEARTBEAT_FILE
    wait_for(lambda: beat.alive() and health("beat", env=stack.env).returncode == 0, timeout=30, what="beat's heartbeat")
    assert stack.stop(timeout=20) == {"beat": 0}
    assert health("beat", env=stack.env).returncode == 1


FLOWER_AUTH = ("ops", "flower-pass")


def start_flower_with_a_worker_and_beat(stack: Stack) -> tuple[str, str, Callable[[], dict]]:
    """Flower, a worker and beat; returns Flower's URL, the worker's node name and a reader of
    Flower's metrics, once Flower sees the worker's task events."""
    port = free_port()
    flower_url = f"http://127.0.0.1:{port}"
    flower = stack.start(
        "flower",
        str(BIN / "celery"), "-A", "worker", "flower", "--address=127.0.0.1", f"--port={port}",
        extra_env={"FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)},
    )
    wait_until_up(f"{flower_url}/healthcheck", flower, timeout=60)
    node = f"flowerworker@{socket.gethostname()}"
    stack.worker("flowerworker")

    def metrics() -> dict:
        text = requests.get(f"{flower_url}/metrics", timeout=5).text  # no auth: a scraper needs none
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    # Workers send task events only once Flower has switched them on (its enable_events,
    # every 5 s): have batches run until Flower counts one, then give them messages.
    stack.beat()
    batch = ("flower_events_total", (("task", "messaging.run_batch"), ("type", "task-succeeded"), ("worker", node)))
    wait_for(lambda: metrics().get(batch, 0) >= 1, timeout=60, interval=0.5, what="Flower to see task events")
    return flower_url, node, metrics


@pytest.mark.e2e
def test_flower_shows_the_workers_and_send_tasks_and_exports_their_metrics(stack, make_message, receiver, db):
    flower_url, node, metrics = start_flower_with_a_worker_and_beat(stack)
    assert metrics()[("flower_worker_online", (("worker", node),))] == 1
    ids = {str(make_message()) for _ in range(3)}
    wait_for(lambda: count(db, SENT) == 3, timeout=60, what="three deliveries")
    assert receiver.count_by_key() == {key: 1 for key in ids}

    succeeded = ("flower_events_total", (("task", "messaging.send_message"), ("type", "task-succeeded"), ("worker", node)))
    samples = wait_for(lambda: (m := metrics()).get(succeeded, 0) >= 3 and m, timeout=30, interval=0.5,
                       what="Flower to count the send tasks")
    assert any(name == "flower_task_runtime_seconds_count" and ("task", "messaging.send_message") in labels
               for name, labels in samples)
    assert any(dict(labels).get("task") == "messaging.run_batch" for _, labels in samples)

    assert requests.get(f"{flower_url}/api/workers", timeout=5).status_code == 401, "basic auth guards the UI and API"
    auth = FLOWER_AUTH
    workers = requests.get(f"{flower_url}/api/workers", params={"refresh": "true"}, auth=auth, timeout=15).json()
    assert node in workers
    tasks_seen = requests.get(f"{flower_url}/api/tasks", params={"taskname": "messaging.send_message"}, auth=auth, timeout=10).json()
    assert {task["args"] for task in tasks_seen.values()} >= {repr((key,)) for key in ids}

    codes = stack.stop(timeout=20)
    assert codes == {"flower": 0, "flowerworker": 0, "beat": 0}, "each stops cleanly on SIGTERM"
    worker_log = next(p for p in stack.processes if p.name == "flowerworker").log()
    assert "ops-secret-key" not in worker_log
    assert worker_log.count("event=delivery ") >= 3
    assert "Task messaging.send_message[" not in worker_log, "one line per delivery: Celery's per-task lines are off"


@pytest.mark.e2e
def test_flower_counts_a_failed_message_as_a_failed_task_and_says_when_a_retry_comes(stack, make_message, receiver, db):
    flower_url, _, _ = start_flower_with_a_worker_and_beat(stack)
    receiver.set_behaviour(status=400)
    for _ in range(2):
        make_message()
    wait_for(lambda: count(db, FAILED) == 2, timeout=60, what="two messages to fail for good")
    receiver.set_behaviour(status=503, retry_after="3600")
    later = make_message()
    wait_for(lambda: db.execute("SELECT attempts FROM messages WHERE id = %s", (later,)).fetchone()["attempts"] == 1,
             timeout=60, what="a failed attempt")

    def flower_tasks(state: str) -> dict:
        params = {"taskname": "messaging.send_message", "state": state}
        return requests.get(f"{flower_url}/api/tasks", params=params, auth=FLOWER_AUTH, timeout=10).json()

    failures = wait_for(lambda: len(t := flower_tasks("FAILURE")) == 2 and t, timeout=30, what="Flower to see the failures")
    assert len(failures) == count(db, FAILED), "Flower's failed tasks follow GET /messaging/failed"
    assert all("failed for good: HTTP 400" in task["exception"] for task in failures.values())
    [retry] = wait_for(lambda: list(flower_tasks("RETRY").values()), timeout=30, what="Flower to see the retry").copy()
    assert "HTTP 503" in retry["exception"] and "next attempt at" in retry["exception"]
    assert retry["args"] == repr((str(later),))
    worker_log = next(p for p in stack.processes if p.name == "flowerworker").log()
    assert "Traceback" not in worker_log, "an expected failure is no error in the worker's log"
