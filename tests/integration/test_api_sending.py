"""Starting and stopping sending, and /messaging/status."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import signals

from api.sending import ALREADY_ON, STARTED
from messaging.domain.message import Status
from messaging.redis import keys
from messaging.task_names import BATCH_TASK
from tests.helpers import wait_for

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
