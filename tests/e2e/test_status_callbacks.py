"""Status callbacks through the real processes: the workers send, beat hands the events out in batches,
the workers POST them, signed, to the demo receiver's /callbacks, and /metrics counts them."""

from __future__ import annotations

import base64

import pytest
import requests

from harness.stack import Stack, environment, free_port
from receiver import Receiver
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
SECRET = "whsec_" + base64.b64encode(b"e2e-callback-key" * 2).decode()
MESSAGES = 120  # more than two batches of messaging/ops/callbacks.py: BATCH_SIZE


def test_every_message_sent_is_called_back_once_signed_in_batches(database_url, redis_url, make_message, tmp_path):
    with Receiver(callback_secret=SECRET) as demo:
        stack = Stack(environment(
            DATABASE_URL=database_url, REDIS_URL=redis_url, WEBHOOK_URL=demo.url, WEBHOOK_AUTH_KEY="e2e-secret",
            SEND_INTERVAL_SECONDS=0.2, SEND_BATCH_SIZE=50, AUTO_START="true", API_AUTH="off",
            STATUS_CALLBACKS="on", STATUS_CALLBACK_URL=demo.callback_url, STATUS_CALLBACK_SIGNING_SECRET=SECRET,
        ), tmp_path)  # fmt: skip
        try:
            ids = {str(make_message()) for _ in range(MESSAGES)}
            port = free_port()
            stack.api(port)
            stack.worker("worker1")
            stack.worker("worker2")
            stack.beat()
            wait_for(lambda: len(demo.callbacks_taken()) >= MESSAGES, timeout=90, what="a callback per message")
            taken = demo.callbacks_taken()
            assert len(taken) == MESSAGES, "each event once: none POSTed twice without a fault"
            assert {one["message_id"] for one in taken} == ids
            assert all(one["type"] == "message.sent" and one["status"] == "sent" and one["verified"] for one in taken)
            assert len({one["webhook_id"] for one in taken}) == MESSAGES

            api = f"http://127.0.0.1:{port}"
            # A batch records its outcomes, then counts them, after its last POST.
            counted = f'messaging_callbacks_total{{result="delivered"}} {float(MESSAGES)}'
            wait_for(lambda: counted in requests.get(f"{api}/metrics", timeout=5).text, timeout=10, what="callbacks counted")
            [event] = requests.get(f"{api}/messaging/messages/{taken[0]['message_id']}/events", timeout=5).json()["callbacks"]
            assert (event["id"], event["callback_state"], event["attempts"]) == (taken[0]["webhook_id"], "delivered", 1)
        finally:
            codes = stack.stop()
        assert codes == {"api": 0, "worker1": 0, "worker2": 0, "beat": 0}, stack.logs()


def test_callbacks_failed_while_the_receiver_was_down_go_out_again_on_a_retry(
    database_url, redis_url, make_message, tmp_path
):
    callback_port = free_port()  # nothing listens there yet: the client's receiver is down
    with Receiver() as provider:
        stack = Stack(environment(
            DATABASE_URL=database_url, REDIS_URL=redis_url, WEBHOOK_URL=provider.url, WEBHOOK_AUTH_KEY="e2e-secret",
            SEND_INTERVAL_SECONDS=0.2, SEND_BATCH_SIZE=50, AUTO_START="true", API_AUTH="off",
            RETRY_BASE_SECONDS=0.2, RETRY_MAX_SECONDS=1, STATUS_CALLBACK_MAX_ATTEMPTS=2,
            STATUS_CALLBACK_URL=f"http://127.0.0.1:{callback_port}/callbacks", STATUS_CALLBACK_SIGNING_SECRET=SECRET,
        ), tmp_path)  # fmt: skip
        try:
            ids = {str(make_message()) for _ in range(10)}
            port = free_port()
            api = f"http://127.0.0.1:{port}"
            stack.api(port)
            stack.worker("worker1")
            stack.beat()
            failed = 'messaging_callbacks_total{result="failed"} 10.0'
            wait_for(lambda: failed in requests.get(f"{api}/metrics", timeout=5).text, timeout=60,
                     what="every callback to fail for good")  # fmt: skip
            with Receiver(port=callback_port, callback_secret=SECRET) as back:
                answer = requests.post(f"{api}/messaging/callbacks/retry", timeout=10)
                assert answer.json() == {"matched": 10, "retried": 10, "dry_run": False}, answer.text
                wait_for(lambda: len(back.callbacks_taken()) >= 10, timeout=30, what="the callbacks sent again")
                taken = back.callbacks_taken()
            assert len(taken) == 10 and {one["message_id"] for one in taken} == ids
            assert all(one["type"] == "message.sent" and one["verified"] for one in taken)
            for one in taken:
                [event] = requests.get(f"{api}/messaging/messages/{one['message_id']}/events", timeout=5).json()["callbacks"]
                assert (event["id"], event["callback_state"]) == (one["webhook_id"], "delivered"), "the same webhook-id"
        finally:
            codes = stack.stop()
        assert codes == {"api": 0, "worker1": 0, "beat": 0}, stack.logs()
