"""Delivery receipts through the real processes: the API under gunicorn, two workers and beat; the demo
receiver answers each delivery and sends signed receipts back to the API, as a provider does. The race (a
receipt before the 202), a duplicate and one out of order are each applied once, in order of meaning, with
one status callback per change of state, and the audit is clean after."""

from __future__ import annotations

import base64

import pytest
import requests

from harness.stack import Stack, environment, free_port
from receiver import Receiver
from tests.faults.drain import assert_audit_clean
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
RECEIPT_SECRET = "whsec_" + base64.b64encode(b"e2e-receipt-key!" * 2).decode()
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"e2e-callback-key" * 2).decode()
PER_GROUP = 4
# The receiver's outcome, how long it holds its 202, and how long after taking the delivery it sends
# the receipts; then what the message ends as, and what became of each receipt.
GROUPS = (
    # Both receipts reach the API before the worker has the 202: kept, then applied once by mark_sent.
    ("duplicate", 400, 0, "delivered", ["kept", "duplicate"]),
    # Delivered first, then undelivered: the first final receipt wins, the later one is only recorded.
    ("out_of_order", 0, 300, "delivered", ["applied", "ignored"]),
    ("undelivered", 0, 300, "undelivered", ["applied"]),
)


def test_receipts_race_duplicate_and_out_of_order_are_applied_once_with_a_callback_per_change(
    database_url, redis_url, make_message, db, tmp_path
):
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    with Receiver(receipt_secret=RECEIPT_SECRET, callback_secret=CALLBACK_SECRET,
                  receipt_url=f"{api}/messaging/receipts") as demo:  # fmt: skip
        env = environment(
            DATABASE_URL=database_url, REDIS_URL=redis_url, WEBHOOK_URL=demo.url, WEBHOOK_AUTH_KEY="e2e-secret",
            SEND_INTERVAL_SECONDS=0.2, SEND_BATCH_SIZE=50, AUTO_START="true", API_AUTH="off",
            DELIVERY_RECEIPTS="on", RECEIPT_SIGNING_SECRET=RECEIPT_SECRET,
            STATUS_CALLBACKS="on", STATUS_CALLBACK_URL=demo.callback_url, STATUS_CALLBACK_SIGNING_SECRET=CALLBACK_SECRET,
        )  # fmt: skip
        stack = Stack(env, tmp_path)
        try:
            stack.api(port)
            stack.worker("worker1")
            stack.worker("worker2")
            stack.beat()
            groups = {}
            for outcome, answer_ms, receipt_ms, final, history in GROUPS:
                demo.set_behaviour(receipt_outcome=outcome, delay_ms=answer_ms, receipt_delay_ms=receipt_ms)
                ids = [make_message() for _ in range(PER_GROUP)]
                expected = len(demo.receipts_sent()) + PER_GROUP * len(history)
                wait_for(lambda expected=expected: len(demo.receipts_sent()) >= expected, timeout=30,
                         what=f"the {outcome} receipts sent")
                groups[outcome] = (ids, final, history)

            for outcome, (ids, final, history) in groups.items():
                for message_id in ids:
                    message = requests.get(f"{api}/messaging/messages/{message_id}", timeout=5).json()
                    assert (message["status"], message["delivery_status"]) == ("sent", final), (outcome, message)
                    events = requests.get(f"{api}/messaging/messages/{message_id}/events", timeout=5).json()
                    assert [receipt["outcome"] for receipt in events["data"]] == history, (outcome, events)
                    assert [event["type"] for event in events["callbacks"]] == ["message.sent", f"message.{final}"]
            answers = {receipt["messageId"]: receipt["answer"] for receipt in reversed(demo.receipts_sent())}
            raced = db.execute("SELECT webhook_message_id FROM messages WHERE id = ANY(%s)", (groups["duplicate"][0],))
            assert {answers[row["webhook_message_id"]] for row in raced} == {202}, "the receipts came before the 202"

            messages = PER_GROUP * len(GROUPS)
            wait_for(lambda: len(demo.callbacks_taken()) >= 2 * messages, timeout=20, what="two callbacks per message")
            taken = demo.callbacks_taken()
            assert len(taken) == 2 * messages and all(one["verified"] for one in taken)
            assert len({one["webhook_id"] for one in taken}) == 2 * messages, "one callback per change, none twice"
        finally:
            codes = stack.stop()
        assert codes == {"api": 0, "worker1": 0, "worker2": 0, "beat": 0}, stack.logs()
    assert_audit_clean(env)
