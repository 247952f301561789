"""Signed requests: Standard Webhooks headers over the exact bytes sent, checked with the
official package's own `verify()`; the demo receiver verifies them when given the secret."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import replace

import pytest
import requests
from standardwebhooks import Webhook, WebhookVerificationError

from messaging.delivery.ports import DeliveryFailed
from messaging.provider.webhook import WebhookClient
from messaging.runtime import Runtime
from receiver import Receiver

OLD = "whsec_" + base64.b64encode(b"old-secret-" * 3).decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-" * 3).decode()
STRANGER = "whsec_" + base64.b64encode(b"someone-else" * 3).decode()


def post(receiver: Receiver, secrets: tuple[str, ...], content: str = "hello") -> tuple[uuid.UUID, dict]:
    client = WebhookClient(receiver.url, "", 2.0, signing_secrets=secrets)
    message_id = uuid.uuid4()
    try:
        client.send(message_id, "+905551111111", content)
    finally:
        client.close()
    [delivery] = [d for d in receiver.deliveries() if d["key"] == str(message_id)]
    return message_id, delivery


def test_a_signed_post_verifies_with_the_standard_package(receiver):
    message_id, delivery = post(receiver, (NEW,), content="ünïcode & quotes \" too")
    headers = delivery["headers"]
    assert headers["webhook-id"] == str(message_id), "webhook-id is the message id, like Idempotency-Key"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert Webhook(NEW).verify(delivery["raw"], headers) == {"to": "+905551111111", "content": "ünïcode & quotes \" too"}


def test_while_rotating_two_signatures_are_sent_and_each_secret_verifies(receiver):
    _, delivery = post(receiver, (OLD, NEW))
    headers = delivery["headers"]
    assert [part.split(",")[0] for part in headers["webhook-signature"].split(" ")] == ["v1", "v1"]
    Webhook(OLD).verify(delivery["raw"], headers)
    Webhook(NEW).verify(delivery["raw"], headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(STRANGER).verify(delivery["raw"], headers)


def test_the_signature_covers_the_exact_bytes(receiver):
    _, delivery = post(receiver, (NEW,))
    tampered = delivery["raw"].replace(b"hello", b"hellO")
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(tampered, delivery["headers"])


def test_without_a_secret_nothing_is_signed(receiver):
    _, delivery = post(receiver, ())
    assert not {"webhook-id", "webhook-timestamp", "webhook-signature"} & set(delivery["headers"])


def test_a_receiver_given_the_secret_takes_signed_posts_and_refuses_others():
    with Receiver(signing_secret=NEW) as checking:
        post(checking, (OLD, NEW))
        with pytest.raises(DeliveryFailed) as refused:
            post(checking, (STRANGER,))
        assert refused.value.status_code == 401 and not refused.value.transient
        unsigned = requests.post(checking.url, json={"to": "+905551111111", "content": "x"}, timeout=5)
        assert unsigned.status_code == 401
        assert [d["signature_valid"] for d in checking.deliveries()] == [True, False, False]


def test_the_runtime_signs_with_the_configured_secrets(settings, receiver):
    runtime = Runtime.open(replace(settings, webhook_signing_secrets=(NEW,)), concurrency=1, name="signing")
    try:
        runtime.provider.send(uuid.uuid4(), "+905551111111", "hi")
    finally:
        runtime.close()
    [delivery] = receiver.deliveries()
    Webhook(NEW).verify(delivery["raw"], delivery["headers"])
