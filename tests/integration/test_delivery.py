"""One send, against a real HTTP receiver, PostgreSQL and Redis (no broker needed)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timezone

from messaging.delivery import rules
from messaging.delivery.outcomes import Outcome
from messaging.delivery.ports import CachedDelivery
from messaging.redis import keys
from messaging.runtime import Runtime


def claim_one(runtime, make_message, **columns):
    message_id = make_message(**columns)
    [claim] = runtime.records.claim_due(1)
    return message_id, claim.token


def row(db, message_id):
    return db.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def test_the_webhook_gets_exactly_the_documented_request(runtime, make_message, receiver):
    message_id, token = claim_one(runtime, make_message, content="Your code is 1234", recipient_phone_number="+905321112233")
    assert rules.deliver(runtime.ports, message_id, token).outcome is Outcome.SENT
    [seen] = receiver.deliveries()
    assert seen["path"] == "/webhook"
    assert seen["raw"] == json.dumps({"to": "+905321112233", "content": "Your code is 1234"}).encode()
    assert seen["json"] == {"to": "+905321112233", "content": "Your code is 1234"}
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["x-ins-auth-key"] == "test-secret-key"
    assert seen["headers"]["idempotency-key"] == str(message_id)


def test_without_an_auth_key_no_auth_header_is_sent(runtime, make_message, receiver, settings):
    keyless = Runtime.open(replace(settings, webhook_auth_key=""))
    try:
        message_id, token = claim_one(keyless, make_message)
        rules.deliver(keyless.ports, message_id, token)
    finally:
        keyless.close()
    assert "x-ins-auth-key" not in receiver.deliveries()[0]["headers"]


def test_a_delivery_is_recorded_and_cached_with_its_ttl(runtime, make_message, receiver, db, settings):
    message_id, token = claim_one(runtime, make_message)
    rules.deliver(runtime.ports, message_id, token)
    recorded = row(db, message_id)
    assert recorded["sending_status"] == 1
    assert recorded["attempts"] == 1
    assert recorded["sent_at"] is not None
    assert recorded["claim_token"] is None
    webhook_id = recorded["webhook_message_id"]
    assert uuid.UUID(webhook_id)  # the receiver's messageId
    cached = json.loads(runtime.redis.get(keys.sent(message_id)))
    assert cached["messageId"] == webhook_id
    assert datetime.fromisoformat(cached["sent_at"]) == recorded["sent_at"]
    ttl = runtime.redis.ttl(keys.sent(message_id))
    assert settings.cache_ttl_seconds - 5 <= ttl <= settings.cache_ttl_seconds


def test_any_2xx_is_a_success_even_without_a_json_body(runtime, make_message, receiver, db):
    receiver.set_behaviour(status=200, body="text")
    message_id, token = claim_one(runtime, make_message)
    assert rules.deliver(runtime.ports, message_id, token).outcome is Outcome.SENT
    assert row(db, message_id)["webhook_message_id"] is None


def test_a_message_in_the_cache_is_recorded_and_never_posted_again(runtime, make_message, receiver, db):
    message_id, token = claim_one(runtime, make_message)
    runtime.cache.remember(message_id, CachedDelivery(datetime(2026, 11, 1, tzinfo=timezone.utc), "from-earlier"))
    assert rules.deliver(runtime.ports, message_id, token).outcome is Outcome.ALREADY_SENT
    assert receiver.deliveries() == []
    recorded = row(db, message_id)
    assert (recorded["sending_status"], recorded["webhook_message_id"]) == (1, "from-earlier")


def test_a_sent_message_is_never_posted_again(runtime, make_message, receiver):
    message_id, token = claim_one(runtime, make_message)
    rules.deliver(runtime.ports, message_id, token)
    runtime.redis.flushdb()  # even without the cache, PostgreSQL says it is sent
    assert rules.deliver(runtime.ports, message_id, token).outcome is Outcome.SKIPPED
    assert len(receiver.deliveries()) == 1


def test_a_task_that_starts_after_stop_releases_its_message_unsent(runtime, make_message, receiver, db):
    message_id, token = claim_one(runtime, make_message)
    runtime.switch.set_enabled(False)
    assert rules.deliver(runtime.ports, message_id, token).outcome is Outcome.RELEASED
    assert receiver.deliveries() == []
    recorded = row(db, message_id)
    assert (recorded["sending_status"], recorded["attempts"], recorded["claim_token"]) == (0, 0, None)


def test_a_task_with_a_stale_token_sends_nothing(runtime, make_message, receiver):
    message_id, token = claim_one(runtime, make_message)
    runtime.records.release_claim(message_id, token)
    [fresh] = runtime.records.claim_due(1)
    assert rules.deliver(runtime.ports, message_id, token).outcome is Outcome.SKIPPED
    assert rules.deliver(runtime.ports, message_id, fresh.token).outcome is Outcome.SENT
    assert len(receiver.deliveries()) == 1


def test_deliveries_are_counted_for_metrics(runtime, make_message):
    message_id, token = claim_one(runtime, make_message)
    rules.deliver(runtime.ports, message_id, token)
    assert runtime.redis.hget("messaging:metrics:deliveries", "sent") == "1"
