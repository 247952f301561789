"""Status callbacks: every change of a message's state is an event, written with the change, and POSTed
to STATUS_CALLBACK_URL signed with Standard Webhooks, at least once, by a real worker; a callback
receiver that answers 500, is slow or is down never changes or delays delivery."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook

from messaging.domain.receipts import ProviderStatus, Receipt
from messaging.ops import callbacks
from messaging.postgres.events import EventRecords
from messaging.postgres.receipts import ReceiptRecords
from messaging.postgres.records import Records
from messaging.provider.webhook import WebhookClient
from messaging.task_names import BATCH_QUEUE, BATCH_TASK, CALLBACK_DISPATCH_TASK
from receiver import Receiver
from tests.integration.api_support import TOKEN
from tests.integration.callback_support import SECRET

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(base_settings, callback_receiver):
    return replace(
        base_settings,
        status_callbacks=True,
        status_callback_url=callback_receiver.url,
        status_callback_signing_secrets=(SECRET,),
        status_callback_timeout_seconds=1.0,
        status_callback_max_attempts=3,
        api_token=TOKEN,
        delivery_receipts=True,
        send_batch_size=10,
    )


def events_of(db, message_id) -> list[dict]:
    return db.execute(
        "SELECT id, type, callback_state, attempts, last_http_status FROM message_events WHERE message_id = %s ORDER BY seq",
        (message_id,),
    ).fetchall()


def wait_until(check, seconds: float = 15.0, *, beat=None):
    """Wait for `check`; with `beat` (a Celery app), send the callbacks' sweep every second meanwhile, as beat does."""
    deadline, swept = time.monotonic() + seconds, 0.0
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if beat is not None and time.monotonic() - swept >= 1.0:
            beat.send_task(CALLBACK_DISPATCH_TASK, queue=BATCH_QUEUE)
            swept = time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


# --- written with the change, in the same statement, only while callbacks are on ---------------------


def test_each_change_of_state_writes_its_event_only_while_callbacks_are_on(runtime, db, make_message):
    on, off = Records(runtime.pool, receipts=True, callbacks=True), Records(runtime.pool, receipts=True)
    receipts = ReceiptRecords(runtime.pool, callbacks=True)
    sent, failed, quiet = (on.insert("+905551112233", f"m{n}") for n in range(3))
    claims = {claim.message_id: claim for claim in on.claim_due(100)}
    assert on.mark_sent(sent.id, claims[sent.id].token, None, "provider-1")
    assert on.record_failed_attempt(failed.id, claims[failed.id].token, error="HTTP 400", retry_in_seconds=0,
                                    max_attempts=5, final=True)  # fmt: skip
    assert off.mark_sent(quiet.id, claims[quiet.id].token, None, "provider-2")
    canceled_id = make_message()
    assert on.cancel(canceled_id)
    receipts.take(Receipt("provider-1", ProviderStatus.DELIVERED))
    expiring = make_message(sending_status=1, sent_at=datetime.now(timezone.utc) - timedelta(days=4))
    assert receipts.expire(3600, 10) == 1
    assert [e["type"] for e in events_of(db, sent.id)] == ["message.sent", "message.delivered"]
    assert [e["type"] for e in events_of(db, failed.id)] == ["message.failed"]
    assert [e["type"] for e in events_of(db, canceled_id)] == ["message.canceled"]
    assert [e["type"] for e in events_of(db, expiring)] == ["message.expired"]
    assert events_of(db, quiet.id) == [], "callbacks off: no event"
    assert all(e["callback_state"] == "pending" for e in events_of(db, sent.id))


def test_a_receipt_kept_before_the_send_gives_both_events_when_mark_sent_applies_it(runtime, db):
    records, receipts = Records(runtime.pool, receipts=True, callbacks=True), ReceiptRecords(runtime.pool, callbacks=True)
    message = records.insert("+905551112233", "early receipt")
    receipts.take(Receipt("provider-early", ProviderStatus.UNDELIVERED, "EC42"))
    [claim] = records.claim_due(10)
    assert records.mark_sent(message.id, claim.token, None, "provider-early")
    assert [e["type"] for e in events_of(db, message.id)] == ["message.sent", "message.undelivered"]


# --- POSTed by a real worker ------------------------------------------------------------------------


def send_all(celery_app, db, make_message, count: int) -> list:
    ids = [make_message() for _ in range(count)]
    celery_app.send_task(BATCH_TASK, queue=BATCH_QUEUE)
    wait_until(lambda: db.execute("SELECT count(*) AS n FROM messages WHERE sending_status = 1").fetchone()["n"] == count)
    return ids


def test_callbacks_are_signed_and_a_500_is_retried_with_the_same_webhook_id(
    callback_receiver, celery_app, celery_worker, db, make_message, shared_app
):
    callback_receiver.statuses = [500, 500, 200]
    [message_id] = send_all(celery_app, db, make_message, 1)
    [event] = wait_until(lambda: [e for e in events_of(db, message_id) if e["callback_state"] == "delivered"], beat=celery_app)
    assert (event["attempts"], event["last_http_status"]) == (3, 200)
    assert len(callback_receiver.received) == 3
    ids = {headers["webhook-id"] for headers, _ in callback_receiver.received}
    assert ids == {str(event["id"])}, "one webhook-id, the event's, on every retry"
    headers, body = callback_receiver.received[-1]
    payload = Webhook(SECRET).verify(body, headers)
    assert payload["type"] == "message.sent"
    api = shared_app(api_token=TOKEN).test_client()
    assert payload["data"] == api.get(f"/messaging/messages/{message_id}", headers=AUTH).get_json()
    listed = api.get(f"/messaging/messages/{message_id}/events", headers=AUTH).get_json()
    [callback] = listed["callbacks"]
    assert (callback["id"], callback["type"], callback["callback_state"], callback["attempts"]) == (
        str(event["id"]), "message.sent", "delivered", 3)  # fmt: skip


def test_a_receiver_that_always_fails_gives_up_after_max_attempts_and_delivery_is_unchanged(
    callback_receiver, celery_app, celery_worker, db, make_message
):
    callback_receiver.statuses = [500]
    ids = send_all(celery_app, db, make_message, 3)
    wait_until(lambda: all(e["callback_state"] == "failed" for i in ids for e in events_of(db, i)), beat=celery_app)
    assert all(e["attempts"] == 3 for i in ids for e in events_of(db, i))
    states = db.execute("SELECT sending_status, attempts FROM messages").fetchall()
    assert states == [{"sending_status": 1, "attempts": 1}] * 3


def test_a_slow_callback_receiver_never_delays_delivery(
    callback_receiver, celery_app, celery_worker, db, make_message, settings, receiver
):
    """The receiver takes 5 s per callback (the timeout is 1 s), with more events due than the worker has
    threads: sending goes on at full pace meanwhile."""
    callback_receiver.delay = 5.0
    send_all(celery_app, db, make_message, 8)
    celery_app.send_task(CALLBACK_DISPATCH_TASK, queue=BATCH_QUEUE)
    wait_until(lambda: callback_receiver.received)  # callbacks hold worker threads now
    started = time.monotonic()
    for _ in range(2):
        make_message()
    celery_app.send_task(BATCH_TASK, queue=BATCH_QUEUE)
    wait_until(lambda: db.execute("SELECT count(*) AS n FROM messages WHERE sending_status = 1").fetchone()["n"] == 10)
    assert time.monotonic() - started < 1.0, "sends waited for the callback receiver"
    # Each POST was cut at the 1 s timeout: no answer, retried later.
    timed_out = wait_until(
        lambda: db.execute("SELECT * FROM message_events WHERE attempts >= 1").fetchall(), 10, beat=celery_app
    )
    assert all(e["callback_state"] == "pending" and e["last_http_status"] is None for e in timed_out)


def test_a_receiver_that_is_down_is_retried_and_a_stranded_event_is_handed_out_again(
    settings, runtime, db, callback_receiver, celery_app, celery_worker, make_message
):
    records = Records(runtime.pool, callbacks=True)
    message = records.insert("+905551112233", "stranded")
    assert records.cancel(message.id)
    # A worker took the event and died: handed out, never reported; its lease has ended.
    db.execute("UPDATE message_events SET dispatch_token = gen_random_uuid(), next_attempt_at = now() - interval '1 s'")
    [event] = wait_until(lambda: [e for e in events_of(db, message.id) if e["callback_state"] == "delivered"], beat=celery_app)
    headers, body = callback_receiver.received[-1]
    assert Webhook(SECRET).verify(body, headers)["type"] == "message.canceled"
    assert event["attempts"] == 1


def test_the_demo_receiver_takes_status_callbacks_verifies_and_lists_them(settings, runtime, db):
    """`make run`'s receiver as the callback receiver: the worker's own steps (hand out, POST, record)."""
    with Receiver(callback_secret=SECRET) as demo:
        records, events = Records(runtime.pool, callbacks=True), EventRecords(runtime.pool)
        message = records.insert("+905551112233", "to cancel")
        assert records.cancel(message.id)
        [handed] = callbacks.dispatch(events, settings)
        client = WebhookClient(demo.callback_url, "", 2.0, signing_secrets=(SECRET,))
        results = callbacks.send_batch(handed, slots=callbacks.slots(8), events=events, client=client, settings=settings)
        client.close()
        [taken] = demo.callbacks_taken()
    assert results == {"delivered": 1}
    assert (taken["type"], taken["message_id"], taken["status"], taken["verified"]) == (
        "message.canceled", str(message.id), "canceled", True)  # fmt: skip
    [event] = events_of(db, message.id)
    assert (taken["webhook_id"], event["callback_state"], event["last_http_status"]) == (str(event["id"]), "delivered", 204)
