"""The liveness checks compose runs, as processes: `python -m worker.health beat`, `celery inspect ping`
against real workers and beat, and Flower watching them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness.stack import BIN, Stack, environment, free_port, wait_until_up
from tests.helpers import wait_for
from worker.beat import HEARTBEAT_ENV

pytestmark = pytest.mark.e2e
SENT, FAILED = 1, 2


def count(db, status: int) -> int:
    return db.execute("SELECT count(*) AS n FROM messages WHERE sending_status = %s", (status,)).fetchone()["n"]


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
