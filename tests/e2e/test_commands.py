"""The operator's commands run as processes: `python -m messaging audit` and `python -m receiver`."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import pytest
import redis
import requests

from harness.stack import ROOT, environment
from messaging.redis import keys

pytestmark = pytest.mark.e2e
TIMEOUT = 5


@pytest.fixture
def client(redis_url):
    opened = redis.Redis.from_url(redis_url, decode_responses=True)
    yield opened
    opened.close()


def test_the_command_prints_the_report_and_exits_1_on_a_disagreement(database_url, redis_url, client, make_message):
    env = environment(DATABASE_URL=database_url, REDIS_URL=redis_url)
    command = [sys.executable, "-m", "messaging", "audit"]
    clean = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.splitlines()[-1] == "audit: clean"

    client.set(keys.sent(make_message()), "{}")
    found = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert found.returncode == 1
    assert "FAIL  cached deliveries: 1 of 1 not sent in postgresql" in found.stdout


def test_the_command_exits_1_naming_an_unreachable_service(database_url):
    env = environment(DATABASE_URL=database_url, REDIS_URL="redis://127.0.0.1:1/0")
    result = subprocess.run([sys.executable, "-m", "messaging", "audit"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "audit failed: redis is unavailable" in result.stderr


def test_the_prune_command_deletes_what_is_past_retention_at_once_and_counts_it(database_url, redis_url, client, make_message, db):
    old, young = make_message(sending_status=1), make_message(sending_status=1)
    db.execute("UPDATE messages SET sent_at = now() - interval '10 days' WHERE id = %s", (old,))
    db.execute("UPDATE messages SET sent_at = now() WHERE id = %s", (young,))
    env = environment(DATABASE_URL=database_url, REDIS_URL=redis_url, MESSAGE_RETENTION_DAYS=7)
    result = subprocess.run([sys.executable, "-m", "messaging", "prune"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "pruned: 1 messages, 0 attempts"
    assert [row["id"] for row in db.execute("SELECT id FROM messages")] == [young]
    assert client.hget(keys.METRICS_PRUNED, "messages") == "1"


def test_the_receiver_command_serves_and_exits_on_sigterm() -> None:
    env = {**os.environ, "RECEIVER_PORT": "0", "RECEIVER_DELAY_MS": "1", "LOG_LEVEL": "INFO"}
    proc = subprocess.Popen([sys.executable, "-m", "receiver"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert select.select([proc.stdout], [], [], 10)[0], "receiver did not start"
        line = proc.stdout.readline().strip()
        assert line.startswith("receiver: listening on http://127.0.0.1:")
        url = line.split(" on ", 1)[1] + "webhook"
        resp = requests.post(url, json={"to": "+49"}, timeout=TIMEOUT,
                             headers={"Idempotency-Key": "cli-key", "X-Ins-Auth-Key": "s3cret"})
        assert resp.status_code == 202
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0
    assert "receiver: delivery key=cli-key to=+49 status=202" in err
    assert "s3cret" not in err
