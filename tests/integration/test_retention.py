"""Retention: messages in a final state older than MESSAGE_RETENTION_DAYS go with their attempts,
a small batch at a time; pending, sending and scheduled messages never go."""

from __future__ import annotations

import dataclasses

import pytest

from messaging.domain.message import Status
from messaging.ops import pruning
from tests.helpers import wait_for

OLD = "now() - interval '100 days'"
RECENT = "now() - interval '80 days'"


@pytest.fixture
def aged(make_message, db):
    """Insert a message in `status` whose last change (and send, for a sent one) was `when`, with two attempts."""

    def make(status: Status, when: str = OLD, **columns) -> object:
        message_id = make_message(sending_status=int(status), **columns)
        db.execute(f"UPDATE messages SET created_at = {when}, updated_at = {when} WHERE id = %s", (message_id,))
        if status is Status.SENT:
            db.execute(f"UPDATE messages SET sent_at = {when} WHERE id = %s", (message_id,))
        db.execute(
            "INSERT INTO message_attempts (message_id, attempt, trigger, started_at) "
            f"SELECT %s, g, 'scheduled', {when} FROM generate_series(1, 2) AS g",
            (message_id,),
        )
        return message_id

    return make


def remaining(db) -> set:
    return {row["id"] for row in db.execute("SELECT id FROM messages")}


def attempts_of(db, message_id) -> int:
    return db.execute("SELECT count(*) AS n FROM message_attempts WHERE message_id = %s", (message_id,)).fetchone()["n"]


def test_final_messages_past_retention_go_with_their_attempts_and_nothing_else_does(runtime, aged, db):
    doomed = [aged(Status.SENT), aged(Status.FAILED), aged(Status.CANCELED)]
    kept = [
        aged(Status.PENDING),
        aged(Status.SENDING, claimed_at=None),
        aged(Status.PENDING, send_at="2099-01-01T00:00:00Z"),  # scheduled
        aged(Status.SENT, RECENT),
        aged(Status.FAILED, RECENT),
        aged(Status.CANCELED, RECENT),
    ]
    # A message sent recently after a long time pending is young: its final state is recent.
    late = aged(Status.SENT, RECENT)
    db.execute(f"UPDATE messages SET created_at = {OLD} WHERE id = %s", (late,))

    assert pruning.prune_messages(runtime.records, 90) == pruning.Pruned(messages=3, attempts=6)
    assert remaining(db) == set(kept) | {late}
    assert [attempts_of(db, message_id) for message_id in doomed] == [0, 0, 0]
    assert attempts_of(db, kept[0]) == 2


def test_pruning_messages_goes_batch_by_batch_and_stops_after_its_last_batch(runtime, aged, db):
    for _ in range(5):
        aged(Status.SENT)
    assert pruning.prune_messages(runtime.records, 90, batch=2, max_batches=2) == pruning.Pruned(messages=4, attempts=8)
    assert pruning.prune_messages(runtime.records, 90, batch=2) == pruning.Pruned(messages=1, attempts=2)
    assert remaining(db) == set()


def test_a_retention_of_0_keeps_every_message(runtime, settings, aged, db):
    old = aged(Status.SENT)
    pruned = pruning.prune(runtime.records, dataclasses.replace(settings, message_retention_days=0))
    assert pruned.messages == 0
    assert remaining(db) == {old}


def test_the_beats_prune_entry_deletes_old_messages_and_metrics_count_them(celery_app, celery_worker, client, aged, db):
    aged(Status.FAILED)
    young = aged(Status.FAILED, RECENT)
    entry = celery_app.conf.beat_schedule["prune"]
    celery_app.send_task(entry["task"], **entry["options"])  # as beat sends it
    wait_for(lambda: remaining(db) == {young}, what="the prune")
    # The task counts after its deletes commit: the scrape may come a moment before the count.
    def counted() -> str | None:
        text = client.get("/metrics").get_data(as_text=True)
        return text if 'messaging_pruned_total{kind="messages"}' in text else None

    exposition = wait_for(counted, what="the metrics to count the deleted message")
    assert 'messaging_pruned_total{kind="messages"} 1.0' in exposition
    # Two went with the old message; the young one's two are past ATTEMPT_RETENTION_DAYS (30).
    assert 'messaging_pruned_total{kind="attempts"} 4.0' in exposition
