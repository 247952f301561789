"""Status callbacks go out in batches: each event keeps its own attempts and backoff, a batch shares one task,
one read and one write. The steps a callback task takes, against the test run's PostgreSQL and a real
callback endpoint, without a broker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from messaging.ops import callbacks
from messaging.postgres.events import EventRecords
from messaging.postgres.records import Records
from messaging.provider.webhook import WebhookClient
from tests.integration.api_support import TOKEN, scrape
from tests.integration.callback_support import SECRET


@pytest.fixture
def settings(base_settings, callback_receiver):
    return replace(base_settings, status_callbacks=True, status_callback_url=callback_receiver.url,
                   status_callback_signing_secrets=(SECRET,), status_callback_timeout_seconds=1.0,
                   status_callback_max_attempts=3, api_token=TOKEN, retry_base_seconds=60, retry_max_seconds=600)  # fmt: skip


@pytest.fixture
def client(callback_receiver) -> Iterator[WebhookClient]:
    made = WebhookClient(callback_receiver.url, "", 1.0, signing_secrets=(SECRET,))
    yield made
    made.close()


@pytest.fixture
def events(runtime) -> EventRecords:
    return EventRecords(runtime.pool)


def canceled(runtime, count: int) -> list:
    """`count` messages canceled while pending: one `message.canceled` event each."""
    records = Records(runtime.pool, callbacks=True)
    made = [records.insert("+905551112233", f"m{n}") for n in range(count)]
    assert all(records.cancel(message.id) for message in made)
    return [message.id for message in made]


def callback_rows(db) -> list[dict]:
    return db.execute(
        "SELECT callback_state, attempts, dispatch_token, next_attempt_at <= now() AS due, last_error"
        " FROM message_events ORDER BY seq"
    ).fetchall()


def send(token, events, client, settings, *, slots=None, clock=None):
    return callbacks.send_batch(token, slots=slots or threading.BoundedSemaphore(1), events=events, client=client,
                                settings=settings, **({"clock": clock} if clock else {}))  # fmt: skip


def test_due_events_go_out_in_batches_and_no_more_batches_than_in_flight(runtime, events, settings, db, monkeypatch):
    monkeypatch.setattr(callbacks, "BATCHES_IN_FLIGHT", 2)
    canceled(runtime, callbacks.BATCH_SIZE * 2 + 7)
    first = callbacks.dispatch(events, settings)
    assert len(first) == 2
    sizes = db.execute("SELECT count(*) AS n FROM message_events GROUP BY dispatch_token ORDER BY n").fetchall()
    assert [row["n"] for row in sizes] == [7, callbacks.BATCH_SIZE, callbacks.BATCH_SIZE], "7 not handed out"
    assert callbacks.dispatch(events, settings) == [], "two batches in flight already"
    batch = events.batch(first[0])
    events.record(first[0], [callbacks.Outcome(event.id, posted=True, delivered=True) for event, _ in batch],
                  max_attempts=3)  # fmt: skip
    [third] = callbacks.dispatch(events, settings)
    assert len(events.batch(third)) == 7


def test_a_task_that_reported_hands_out_full_batches_only_and_the_sweep_the_rest(runtime, events, settings, monkeypatch):
    monkeypatch.setattr(callbacks, "BATCH_SIZE", 3)
    canceled(runtime, 5)
    [full] = callbacks.dispatch(events, settings, full_only=True)
    assert len(events.batch(full)) == 3
    assert callbacks.dispatch(events, settings, full_only=True) == [], "2 due: not a full batch"
    [rest] = callbacks.dispatch(events, settings)
    assert len(events.batch(rest)) == 2


def test_callbacks_yield_to_sends_one_batch_from_the_sweep_while_claims_wait_for_a_worker(runtime, events, settings,
                                                                                          monkeypatch):
    monkeypatch.setattr(callbacks, "SENDS_QUEUED_CLAIMS", 3)
    canceled(runtime, callbacks.BATCH_SIZE * 4)
    records = Records(runtime.pool)
    for n in range(3):
        records.insert("+905551112233", f"waiting {n}")
    claims = records.claim_due(3)
    assert len(claims) == 3, "three sends wait for a worker"
    assert callbacks.dispatch(events, settings, full_only=True) == [], "a task that reported hands out nothing"
    [one] = callbacks.dispatch(events, settings)
    assert len(events.batch(one)) == callbacks.BATCH_SIZE
    assert callbacks.dispatch(events, settings) == [], "one batch in flight while sends queue up"
    assert records.start_sending(claims[0].message_id, claims[0].token) is not None
    assert len(callbacks.dispatch(events, settings)) == 3, "two waiting: no longer queued, the rest go out"


def test_a_batch_posts_each_event_signed_and_records_all_outcomes_in_one_go(
    runtime, events, settings, client, callback_receiver, db
):
    canceled(runtime, 3)
    callback_receiver.statuses = [200, 500, 200]
    [token] = callbacks.dispatch(events, settings)
    assert send(token, events, client, settings) == {"delivered": 2, "retrying": 1}
    assert [headers["webhook-id"] for headers, _ in callback_receiver.received] == [
        str(row["id"]) for row in db.execute("SELECT id FROM message_events ORDER BY seq")
    ]
    rows = callback_rows(db)
    assert [(row["callback_state"], row["attempts"], row["dispatch_token"]) for row in rows] == [
        ("delivered", 1, None), ("pending", 1, None), ("delivered", 1, None)]  # fmt: skip
    assert not rows[1]["due"], "the failed one waits out its backoff"


def test_a_batch_that_runs_out_of_time_gives_the_rest_back_due_at_once_and_uncounted(
    runtime, events, settings, client, callback_receiver, db
):
    canceled(runtime, 4)
    [token] = callbacks.dispatch(events, settings)
    ticks = iter([0.0, 0.0, callbacks.BATCH_SECONDS / 2, callbacks.BATCH_SECONDS, callbacks.BATCH_SECONDS])
    assert send(token, events, client, settings, clock=lambda: next(ticks)) == {"delivered": 2}
    assert len(callback_receiver.received) == 2
    rows = callback_rows(db)
    assert [(row["callback_state"], row["attempts"]) for row in rows] == [
        ("delivered", 1), ("delivered", 1), ("pending", 0), ("pending", 0)]  # fmt: skip
    assert all(row["due"] and row["dispatch_token"] is None for row in rows[2:])


def test_a_worker_with_no_free_slot_gives_the_batch_back_unposted(runtime, events, settings, client, callback_receiver, db):
    canceled(runtime, 2)
    [token] = callbacks.dispatch(events, settings)
    assert send(token, events, client, settings, slots=_busy()) == {}
    assert callback_receiver.received == []
    assert [(row["callback_state"], row["attempts"], row["dispatch_token"]) for row in callback_rows(db)] == [
        ("pending", 0, None)] * 2  # fmt: skip


def _busy() -> threading.BoundedSemaphore:
    taken = threading.BoundedSemaphore(1)
    taken.acquire()
    return taken


def test_an_event_whose_message_was_deleted_fails_at_once_unposted(runtime, events, settings, client, callback_receiver, db):
    [gone, _] = canceled(runtime, 2)
    db.execute("DELETE FROM messages WHERE id = %s", (gone,))
    [token] = callbacks.dispatch(events, settings)
    assert send(token, events, client, settings) == {"failed": 1, "delivered": 1}
    [first, second] = callback_rows(db)
    assert (first["callback_state"], first["attempts"], first["last_error"]) == ("failed", 0, callbacks.MESSAGE_GONE)
    assert second["callback_state"] == "delivered" and len(callback_receiver.received) == 1


def test_a_task_whose_lease_ended_posts_and_records_nothing(runtime, events, settings, client, callback_receiver, db):
    canceled(runtime, 2)
    [late] = callbacks.dispatch(events, settings)
    db.execute("UPDATE message_events SET next_attempt_at = now() - interval '1 s'")  # its lease ended
    [current] = callbacks.dispatch(events, settings)
    assert send(late, events, client, settings) == {}
    assert callback_receiver.received == []
    assert {row["dispatch_token"] for row in callback_rows(db)} == {current}


def test_metrics_count_callback_attempts_by_result(runtime, shared_app):
    runtime.counters.callbacks({"delivered": 3, "retrying": 2})
    runtime.counters.callbacks({"delivered": 1, "failed": 1})
    samples = scrape(shared_app(api_token=TOKEN).test_client())
    assert [samples[("messaging_callbacks_total", (("result", result),))] for result in ("delivered", "retrying", "failed")] == [
        4, 2, 1]  # fmt: skip


def test_metrics_say_how_long_the_most_overdue_callback_has_waited_while_callbacks_are_on(
    runtime, events, settings, shared_app, db
):
    overdue = ("messaging_callbacks_overdue_seconds", ())
    on = shared_app(api_token=TOKEN, status_callbacks=True).test_client()
    assert scrape(on)[overdue] == 0, "nothing waits"
    canceled(runtime, 2)
    db.execute("UPDATE message_events SET next_attempt_at = now() - interval '120 s'"
               " WHERE seq = (SELECT min(seq) FROM message_events)")  # fmt: skip
    assert 120 <= scrape(on)[overdue] < 125
    callbacks.dispatch(events, settings)
    assert scrape(on)[overdue] == 0, "a task holds them now, until its lease ends"
    assert overdue not in scrape(shared_app(api_token=TOKEN).test_client()), "no gauge while callbacks are off"


def test_failed_callbacks_of_a_window_go_out_again_with_their_webhook_ids(
    runtime, events, settings, client, callback_receiver, shared_app, db
):
    early, first, second, gone = canceled(runtime, 4)
    db.execute("UPDATE message_events SET callback_state = 'failed', attempts = 3, last_error = 'HTTP 500'")
    db.execute("UPDATE message_events SET occurred_at = '2026-11-01T09:00:00Z' WHERE message_id = %s", (early,))
    db.execute("DELETE FROM messages WHERE id = %s", (gone,))  # retention took it
    api = shared_app().test_client()

    def retry(body: dict) -> dict:
        answer = api.post("/messaging/callbacks/retry", json=body)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()

    since_the_outage = {"occurred_after": "2026-11-02T00:00:00+01:00"}
    assert retry({**since_the_outage, "dry_run": True}) == {"matched": 2, "retried": 0, "dry_run": True}
    assert {row["callback_state"] for row in callback_rows(db)} == {"failed"}, "a dry run changes nothing"
    assert retry({**since_the_outage, "limit": 1}) == {"matched": 1, "retried": 1, "dry_run": False}
    assert retry(since_the_outage) == {"matched": 1, "retried": 1, "dry_run": False}
    assert retry(since_the_outage) == {"matched": 0, "retried": 0, "dry_run": False}

    state = {row["message_id"]: (row["callback_state"], row["attempts"]) for row in
             db.execute("SELECT message_id, callback_state, attempts FROM message_events")}  # fmt: skip
    assert state == {early: ("failed", 3), first: ("pending", 0), second: ("pending", 0), gone: ("failed", 3)}
    [token] = callbacks.dispatch(events, settings)
    assert send(token, events, client, settings) == {"delivered": 2}
    assert [headers["webhook-id"] for headers, _ in callback_receiver.received] == [
        str(row["id"]) for row in db.execute("SELECT id FROM message_events WHERE message_id = ANY(%s) ORDER BY seq",
                                             ([first, second],))  # fmt: skip
    ]


@pytest.mark.parametrize("body", [{"occurred_after": "2026-11-02T00:00:00"}, {"failed_after": "2026-11-02T00:00:00Z"},
                                  {"limit": 0}])  # fmt: skip
def test_a_bad_callback_retry_answers_422_and_retries_nothing(runtime, shared_app, db, body):
    canceled(runtime, 1)
    db.execute("UPDATE message_events SET callback_state = 'failed'")
    answer = shared_app().test_client().post("/messaging/callbacks/retry", json=body)
    assert answer.status_code == 422 and set(answer.get_json()["error"]["fields"]) == set(body)
    assert {row["callback_state"] for row in callback_rows(db)} == {"failed"}
