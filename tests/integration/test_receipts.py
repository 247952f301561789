"""Delivery receipts: signed, applied once and in order of meaning, kept when they come before the
message is recorded sent, expired or dropped by the sweep, and seen in the lists, /metrics and the audit."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from dataclasses import replace

import pytest
from standardwebhooks import Webhook
from werkzeug.serving import make_server

from messaging.ops import receipt_sweep
from messaging.postgres.receipts import ReceiptRecords
from messaging.postgres.records import Records
from receiver import Receiver
from messaging.task_names import BATCH_QUEUE, BATCH_TASK
from tests.integration.api_support import TOKEN

SECRET = "whsec_" + base64.b64encode(b"receipt-secret-" * 2).decode()
STRANGER = "whsec_" + base64.b64encode(b"someone-else!!" * 2).decode()


def signed(body: dict, secret: str = SECRET, *, at: datetime | None = None) -> tuple[bytes, dict]:
    raw, moment, webhook_id = json.dumps(body), at or datetime.now(timezone.utc), f"msg_{uuid.uuid4().hex}"
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, moment, raw),
    }
    return raw.encode(), headers


@pytest.fixture(scope="module")
def provider() -> Iterator[Receiver]:
    """A provider that sends signed receipts and answers each POST 400 ms late."""
    with Receiver(receipt_secret=SECRET, delay_ms=400) as running:
        yield running


@pytest.fixture
def settings(base_settings, provider):
    provider.reset()
    return replace(
        base_settings, receipt_signing_secrets=(SECRET,), delivery_receipts=True, api_token=TOKEN, webhook_url=provider.url
    )


@pytest.fixture
def api(shared_app):
    return shared_app(receipt_signing_secrets=(SECRET,), api_token=TOKEN).test_client()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post_receipt(api, message_id: str, status: str = "delivered", **extra):
    raw, headers = signed({"messageId": message_id, "status": status, **extra})
    return api.post("/messaging/receipts", data=raw, headers=headers)


@pytest.fixture
def send(settings, runtime, db):
    """`send(provider_id)`: a message claimed and recorded sent through mark_sent, as a worker does."""
    records = Records(runtime.pool, receipts=True)

    def make(provider_id: str, sent_at: datetime | None = None) -> uuid.UUID:
        message = records.insert("+905551112233", "hello")
        [claim] = [c for c in records.claim_due(100) if c.message_id == message.id]
        assert records.mark_sent(claim.message_id, claim.token, sent_at, provider_id, attempted=True)
        return message.id

    return make


def delivery(api, message_id) -> dict:
    return api.get(f"/messaging/messages/{message_id}", headers=AUTH).get_json()


# --- signed, and only while a secret is set ------------------------------------------------------


def test_receipts_answer_404_while_no_secret_is_set(shared_app):
    api = shared_app().test_client()
    raw, headers = signed({"messageId": "x", "status": "delivered"})
    assert api.post("/messaging/receipts", data=raw, headers=headers).status_code == 404


def test_a_receipt_needs_a_valid_signature_within_5_minutes_but_no_api_token(api, send):
    send("p-1")
    body = {"messageId": "p-1", "status": "delivered"}
    for raw, headers in (
        signed(body, STRANGER),
        signed(body, at=datetime.now(timezone.utc) - timedelta(minutes=6)),
        (json.dumps(body).encode(), {"Content-Type": "application/json"}),
    ):
        answer = api.post("/messaging/receipts", data=raw, headers=headers)
        assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "unauthorized"
    raw, headers = signed(body)
    assert api.post("/messaging/receipts", data=raw.replace(b"delivered", b"undelivered"), headers=headers).status_code == 401
    assert api.post("/messaging/receipts", data=raw, headers=headers).status_code == 200  # no bearer token
    assert api.post("/messaging/receipts", data=raw, headers={**headers, "Host": "evil.example"}).status_code == 400


def test_a_signed_body_that_is_not_a_receipt_answers_422(api):
    raw, headers = signed({"messageId": "p-1", "status": "read"})
    answer = api.post("/messaging/receipts", data=raw, headers=headers)
    assert answer.status_code == 422 and "status" in answer.get_json()["error"]["fields"]


# --- applied once, in order of meaning -----------------------------------------------------------


def test_the_first_final_receipt_wins_a_duplicate_changes_nothing_a_later_one_is_only_recorded(api, send):
    message_id = send("p-2")
    at = "2026-11-28T09:02:03+00:00"
    first = post_receipt(api, "p-2", "delivered", timestamp=at)
    assert (first.status_code, first.get_json()) == (200, {"outcome": "applied"})
    message = delivery(api, message_id)
    assert (message["delivery_status"], message["delivered_at"], message["status"]) == ("delivered", at, "sent")

    assert (post_receipt(api, "p-2", "delivered").status_code, delivery(api, message_id)) == (200, message)
    later = post_receipt(api, "p-2", "failed", error_code="EC-1")
    assert (later.status_code, later.get_json()["outcome"]) == (200, "ignored")
    assert delivery(api, message_id) == message

    events = api.get(f"/messaging/messages/{message_id}/events", headers=AUTH).get_json()["data"]
    assert [(e["status"], e["outcome"], e["error_code"]) for e in events] == [
        ("delivered", "applied", None), ("delivered", "duplicate", None), ("failed", "ignored", "EC-1"),
    ]  # fmt: skip


def test_an_undelivered_receipt_keeps_the_providers_error_code(api, send):
    message_id = send("p-3")
    post_receipt(api, "p-3", "failed", error_code="absent-subscriber")
    message = delivery(api, message_id)
    assert (message["delivery_status"], message["delivered_at"], message["error_code"]) == (
        "undelivered", None, "absent-subscriber",
    )  # fmt: skip


def test_a_receipt_before_the_message_is_recorded_sent_is_applied_when_it_is(api, send):
    early = post_receipt(api, "p-4", "delivered")
    assert (early.status_code, early.get_json()["outcome"]) == (202, "kept")
    assert post_receipt(api, "p-4", "delivered").status_code == 202  # still kept, a duplicate of it
    message_id = send("p-4")
    assert delivery(api, message_id)["delivery_status"] == "delivered"
    assert post_receipt(api, "p-4", "undelivered").get_json()["outcome"] == "ignored"


# --- the sweep: expired, orphans ------------------------------------------------------------------


def test_the_sweep_expires_sent_messages_without_a_final_receipt_and_drops_orphans(api, send, settings, runtime, db):
    old = send("p-5", sent_at=datetime.now(timezone.utc) - timedelta(seconds=settings.receipt_timeout_seconds + 5))
    fresh = send("p-6")
    assert post_receipt(api, "nobody-knows", "delivered").status_code == 202
    receipts = ReceiptRecords(runtime.pool)
    assert receipt_sweep.sweep(receipts, settings) == receipt_sweep.Swept(expired=1, orphans=0)
    db.execute("UPDATE receipt_inbox SET received_at = now() - interval '301 seconds' WHERE message_id IS NULL")
    swept = receipt_sweep.sweep(receipts, settings, batch=1)
    assert swept == receipt_sweep.Swept(expired=0, orphans=1)
    runtime.counters.receipts_swept(swept.expired + 1, swept.orphans)
    assert (delivery(api, old)["delivery_status"], delivery(api, fresh)["delivery_status"]) == ("expired", None)
    assert post_receipt(api, "p-5", "delivered").get_json()["outcome"] == "ignored"
    assert db.execute("SELECT count(*) AS n FROM delivery_receipts WHERE webhook_message_id = 'nobody-knows'").fetchone()["n"] == 0

    metrics = api.get("/metrics").get_data(as_text=True)
    assert 'messaging_receipts_total{status="expired"} 1.0' in metrics
    assert 'messaging_receipts_total{status="delivered"} 2.0' in metrics  # nobody-knows and p-5's late one
    assert "messaging_receipt_orphans_total 1.0" in metrics
    assert 'messaging_receipt_delay_seconds_bucket{le="+Inf"} 2.0' in metrics


def test_the_sweep_does_nothing_while_receipts_are_off(runtime, settings, send):
    send("p-7", sent_at=datetime.now(timezone.utc) - timedelta(days=30))
    off = replace(settings, receipt_signing_secrets=(), delivery_receipts=False)
    assert receipt_sweep.sweep(ReceiptRecords(runtime.pool), off) == receipt_sweep.Swept()


# --- seen in the lists --------------------------------------------------------------------------


def test_the_sent_list_filters_by_delivery_status(api, send):
    delivered, undelivered, unknown = send("p-8"), send("p-9"), send("p-10")
    post_receipt(api, "p-8", "delivered")
    post_receipt(api, "p-9", "undelivered")
    for wanted, expected in (("delivered", delivered), ("undelivered", undelivered), ("unknown", unknown)):
        page = api.get(f"/messaging/sent?delivery_status={wanted}", headers=AUTH).get_json()
        assert ([m["id"] for m in page["data"]], page["pagination"]["total"]) == ([str(expected)], 1), wanted
    assert api.get("/messaging/sent?delivery_status=expired", headers=AUTH).get_json()["data"] == []
    assert api.get("/messaging/sent?delivery_status=read", headers=AUTH).status_code == 400
    assert len(api.get("/messaging/sent", headers=AUTH).get_json()["data"]) == 3


# --- for real: a receiver that sends the receipt before it answers 202, and a real worker -----------


@pytest.fixture
def served_api(shared_app) -> Iterator[str]:
    """The API over HTTP in this process, for a receiver to send receipts to."""
    server = make_server("127.0.0.1", 0, shared_app(receipt_signing_secrets=(SECRET,), api_token=TOKEN), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_receipt_that_comes_before_the_202_is_applied_when_the_worker_records_the_send(
    served_api, provider, celery_app, celery_worker, make_message, db
):
    """The provider sends the receipt at once and answers 202 400 ms later: the receipt reaches the API
    while the send is not recorded yet (202, kept), and mark_sent applies it."""
    provider.set_behaviour(receipt_url=f"{served_api}/messaging/receipts", receipt_delay_ms=0, receipt_outcome="delivered")
    message_id = make_message()
    celery_app.send_task(BATCH_TASK, queue=BATCH_QUEUE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = db.execute("SELECT sending_status, delivery_status FROM messages WHERE id = %s", (message_id,)).fetchone()
        if row["sending_status"] == 1:
            break
        time.sleep(0.02)
    [receipt] = provider.receipts_sent()
    assert receipt["answer"] == 202, "the receipt came while the send was not recorded yet"
    assert (row["sending_status"], row["delivery_status"]) == (1, "delivered")
