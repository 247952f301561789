"""The real processes, as the README runs them, driven over HTTP against a local receiver."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from harness.stack import BIN, Stack, environment, free_port
from messaging.task_names import BATCH_TASK
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
INTERVAL = 0.5


@pytest.fixture
def stack(database_url, redis_url, receiver, tmp_path):
    env = environment(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WEBHOOK_URL=receiver.url,
        WEBHOOK_AUTH_KEY="e2e-secret",
        WEBHOOK_TIMEOUT_SECONDS=2,
        SEND_INTERVAL_SECONDS=INTERVAL,
        SEND_BATCH_SIZE=2,
        AUTO_START="false",
    )
    running = Stack(env, tmp_path)
    yield running
    codes = running.stop()
    print(running.logs())
    _ = codes


def test_the_whole_system_sends_two_per_interval_oldest_first_and_stops(stack, make_message, receiver):
    ids = [str(make_message(created_at=T0 + timedelta(minutes=m))) for m in range(6)]
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    stack.api(port)
    stack.worker("worker1")
    stack.worker("worker2")
    stack.beat()

    status = requests.get(f"{api}/messaging/status", timeout=5).json()
    assert status["enabled"] is False and status["counts"]["pending"] == 6
    batches = stack.tasks_run(BATCH_TASK, "worker1", "worker2")
    wait_for(lambda: stack.tasks_run(BATCH_TASK, "worker1", "worker2") >= batches + 3, timeout=60, what="three batches run")
    assert receiver.deliveries() == [], "nothing is sent before start, while batches run"

    answer = requests.post(f"{api}/messaging/start", timeout=5)
    assert answer.status_code == 200 and answer.json()["enabled"] is True
    wait_for(lambda: len(receiver.deliveries()) == 6, timeout=60, what="all six deliveries")
    keys = [d["key"] for d in receiver.deliveries()]
    assert receiver.count_by_key() == {key: 1 for key in ids}
    for position in range(0, 6, 2):  # each batch of two holds the oldest still pending
        assert set(keys[position : position + 2]) == set(ids[position : position + 2])
    assert all(d["headers"]["x-ins-auth-key"] == "e2e-secret" for d in receiver.deliveries())

    wait_for(lambda: requests.get(f"{api}/messaging/status", timeout=5).json()["counts"]["sent"] == 6, what="records")
    page = requests.get(f"{api}/messaging/sent", params={"limit": 4, "offset": 0}, timeout=5).json()
    cursor = page["pagination"].pop("next_cursor")
    assert page["pagination"] == {"limit": 4, "offset": 0, "total": 6}
    assert isinstance(cursor, str) and cursor, "six sent, four shown: there is a next page"
    rest = requests.get(f"{api}/messaging/sent", params={"limit": 4, "cursor": cursor}, timeout=5).json()
    assert rest["pagination"]["next_cursor"] is None
    listed = page["data"] + rest["data"]
    assert sorted(m["id"] for m in listed) == sorted(ids), "every sent message once, across the two pages"
    assert [m["id"] for m in listed] == [m["id"] for m in sorted(listed, key=lambda m: (m["sent_at"], m["id"]), reverse=True)]
    assert all(m["status"] == "sent" and m["webhook_message_id"] for m in listed)

    assert requests.post(f"{api}/messaging/stop", timeout=5).json()["enabled"] is False
    make_message()
    batches = stack.tasks_run(BATCH_TASK, "worker1", "worker2")
    wait_for(lambda: stack.tasks_run(BATCH_TASK, "worker1", "worker2") >= batches + 3, timeout=60, what="three batches run")
    assert len(receiver.deliveries()) == 6, "nothing is sent after stop, while batches run"

    stopping = time.monotonic()
    codes = stack.stop()
    assert codes == {"api": 0, "worker1": 0, "worker2": 0, "beat": 0}, stack.logs()
    assert time.monotonic() - stopping < 2 + 5, "SIGTERM ends everything within the webhook timeout plus a margin"


def test_a_process_with_a_bad_setting_stops_with_one_line_naming_it(stack):
    stack.env["SEND_BATCH_SIZE"] = "0"
    processes = (
        stack.worker("bad-worker"),
        stack.beat("bad-beat"),
        stack.start("bad-migrate", sys.executable, "-m", "messaging", "migrate"),
        stack.start("bad-api", str(BIN / "gunicorn"), "api:create_app()", extra_env={"GUNICORN_BIND": f"127.0.0.1:{free_port()}"}),
    )
    for process in processes:
        assert process.wait(30) != 0
        assert "SEND_BATCH_SIZE must be between 1 and 100000, got 0" in process.log()
        assert "Traceback" not in process.log()
