"""A fault that is not the message's, met by a real worker: the claim goes back unsent, uncounted and
logged once, whatever the number of messages it hits."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from messaging.delivery import faults
from messaging.logs import Throttle
from tests.helpers import wait_for
from worker import tasks

MESSAGES = 3


@pytest.fixture
def settings(base_settings):
    """An auth key ending in a newline, as read from a secret file, past the start-up check (built directly)."""
    return replace(base_settings, webhook_auth_key=base_settings.webhook_auth_key + "\n", send_batch_size=MESSAGES)


def test_an_auth_key_http_refuses_sends_nothing_fails_nothing_and_is_logged_once(
    celery_worker, make_message, receiver, db, caplog, monkeypatch, settings
):
    monkeypatch.setattr(faults, "fault_log", Throttle(seconds=30))
    caplog.set_level(logging.INFO)
    ids = [make_message() for _ in range(MESSAGES)]
    tasks.run_batch.delay()
    wait_for(
        lambda: db.execute("SELECT count(*) AS n FROM messages WHERE claim_token IS NULL AND next_attempt_at > now()")
        .fetchone()["n"] == MESSAGES,
        what="every claim to go back",
    )
    rows = db.execute(
        "SELECT sending_status, attempts, last_error, next_attempt_at - now() AS due_in FROM messages WHERE id = ANY(%s)",
        (ids,),
    ).fetchall()
    assert {(row["sending_status"], row["attempts"], row["last_error"]) for row in rows} == {(0, 0, None)}
    assert all(row["due_in"].total_seconds() > settings.send_interval_seconds - 10 for row in rows), "not before the next batch"
    assert db.execute("SELECT count(*) AS n FROM message_attempts").fetchone()["n"] == 0, "no attempt was made"
    assert receiver.deliveries() == []
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("event=send_fault ") and "setting=WEBHOOK_AUTH_KEY" in warnings[0]
    assert settings.webhook_auth_key.strip() not in caplog.text
