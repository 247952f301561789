"""/metrics as Prometheus' own linter reads it, after real deliveries so every family has samples."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import wait_for
from worker import tasks

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)


def test_promtool_check_metrics_finds_nothing_in_a_real_scrape(client, shared_app, celery_worker, make_message, receiver, db):
    make_message()
    tasks.run_batch.delay()
    wait_for(lambda: db.execute("SELECT count(*) AS n FROM messages WHERE sending_status = 1").fetchone()["n"] == 1,
             what="one message sent")
    make_message()  # left pending

    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert b"messaging_deliveries_total{outcome=\"sent\"} 1.0" in scraped.data
    with_callbacks = shared_app(status_callbacks=True).test_client().get("/metrics")
    assert b"messaging_callbacks_overdue_seconds 0.0" in with_callbacks.data
    for exposition in (scraped.data, with_callbacks.data):
        linted = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=60)
        assert linted.returncode == 0 and not linted.stdout and not linted.stderr, (linted.stdout + linted.stderr).decode()
