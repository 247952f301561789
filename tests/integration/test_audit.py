"""`python -m messaging audit`: clean when PostgreSQL, the delivery cache and the metrics agree,
and each kind of disagreement found and named."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import redis

from messaging.delivery import rules
from messaging.domain.message import Status
from messaging.ops import audit
from messaging.redis import keys

NOW = datetime.now(timezone.utc)


@pytest.fixture
def client(settings):
    opened = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield opened
    opened.close()


@pytest.fixture
def counters_began(client):
    """The counters began an hour ago."""
    client.set(keys.METRICS_SINCE, (NOW - timedelta(hours=1)).isoformat())


def sent(make_message, client, *, counted: bool = True):
    """A message sent, cached and counted as a worker leaves it."""
    message_id = make_message(sending_status=Status.SENT, sent_at=NOW, attempts=1, webhook_message_id="wh")
    client.set(keys.sent(message_id), '{"messageId": "wh"}')
    if counted:
        client.hincrby(keys.METRICS_DELIVERIES, "sent", 1)
    return message_id


def checks(runtime, client, settings) -> dict[str, audit.Check]:
    return {check.name: check for check in audit.run(runtime.records, client, settings).checks}


def test_agreeing_stores_are_clean(runtime, client, settings, make_message, counters_began):
    for _ in range(3):
        sent(make_message, client)
    make_message()  # pending
    make_message(sending_status=Status.SENDING, claimed_at=datetime.now(timezone.utc), claim_token=uuid.uuid4())  # a fresh claim
    report = audit.run(runtime.records, client, settings)
    assert report.clean, report.lines()
    assert report.lines()[-1] == "audit: clean"


@pytest.mark.parametrize("status", [Status.FAILED, Status.PENDING, Status.CANCELED], ids=lambda s: s.label)
def test_a_cached_delivery_postgresql_does_not_have_as_sent_is_named(runtime, client, settings, make_message, status):
    sent(make_message, client)
    wrong = make_message(sending_status=status)
    client.set(keys.sent(wrong), "{}")
    check = checks(runtime, client, settings)["cached deliveries"]
    assert not check.ok
    assert check.detail == f"1 of 2 not sent in postgresql: {wrong} ({status.label})"


def test_a_cached_delivery_of_an_unknown_message_or_a_foreign_key_is_named(runtime, client, settings):
    unknown = uuid.uuid4()
    client.set(keys.sent(unknown), "{}")
    client.set(keys.sent("junk"), "{}")
    check = checks(runtime, client, settings)["cached deliveries"]
    assert not check.ok and f"{unknown} (not in postgresql)" in check.detail and "messaging:sent:junk (not a message id)" in check.detail


def test_a_delivery_being_recorded_passes(runtime, client, settings, make_message):
    now = datetime.now(timezone.utc)
    recording = make_message(sending_status=Status.SENDING, claimed_at=now, sending_started_at=now, claim_token=uuid.uuid4())
    client.set(keys.sent(recording), "{}")
    assert checks(runtime, client, settings)["cached deliveries"].ok


def test_every_cached_delivery_is_read_with_scan_in_batches(runtime, client, settings, make_message):
    ids = [sent(make_message, client) for _ in range(5)]
    client.set(keys.sent(ids[0]).replace("sent", "other"), "{}")  # not a delivery key

    class NoKeys(redis.Redis):
        def keys(self, *args, **kwargs):
            raise AssertionError("KEYS blocks Redis; the audit must SCAN")

    scanning = NoKeys.from_url(settings.redis_url, decode_responses=True)
    assert checks(runtime, scanning, settings)["cached deliveries"].detail == "5, each sent in postgresql"
    scanning.close()


def test_a_claim_past_the_timeout_and_the_batch_interval_is_named(runtime, client, settings, make_message):
    allowed = settings.claim_timeout_seconds + settings.send_interval_seconds
    now = datetime.now(timezone.utc)
    make_message(sending_status=Status.SENDING, claimed_at=now - timedelta(seconds=allowed - 60), claim_token=uuid.uuid4())
    assert checks(runtime, client, settings)["claims"].ok
    stuck = now - timedelta(seconds=allowed + 5)
    make_message(sending_status=Status.SENDING, claimed_at=stuck, sending_started_at=stuck, claim_token=uuid.uuid4())
    check = checks(runtime, client, settings)["claims"]
    assert not check.ok and check.detail.startswith("1 in sending for over")


def test_a_delivery_recorded_but_not_counted_is_a_disagreement(runtime, client, settings, make_message, counters_began):
    sent(make_message, client)
    sent(make_message, client, counted=False)
    check = checks(runtime, client, settings)["counts"]
    assert not check.ok
    assert check.detail.startswith("2 sent in postgresql since") and "1 counted (sent 1, already_sent 0)" in check.detail


def test_counts_that_outlive_rows_or_predate_the_counters_pass(runtime, client, settings, make_message, counters_began):
    client.hincrby(keys.METRICS_DELIVERIES, "sent", 50)  # rows since deleted
    client.hincrby(keys.METRICS_DELIVERIES, "already_sent", 1)
    make_message(sending_status=Status.SENT, sent_at=NOW - timedelta(days=1), attempts=1)  # before the counters
    make_message(sending_status=Status.SENT, sent_at=NOW)  # a seed row: sent, never POSTed here
    assert checks(runtime, client, settings)["counts"].ok


def test_the_first_batch_marks_when_the_counters_began_and_later_ones_keep_it(runtime, client):
    rules.run_batch(runtime.ports, lambda claims: None)
    began = client.get(keys.METRICS_SINCE)
    assert datetime.fromisoformat(began) <= datetime.now(timezone.utc)
    rules.run_batch(runtime.ports, lambda claims: None)
    assert client.get(keys.METRICS_SINCE) == began




def test_a_message_delivered_without_being_sent_is_a_disagreement(runtime, client, settings, make_message):
    make_message(sending_status=Status.SENT, sent_at=NOW, webhook_message_id="a", delivery_status="delivered")
    assert audit.run(runtime.records, client, settings).checks[-1].ok
    make_message(sending_status=Status.FAILED, delivery_status="delivered")
    report = audit.run(runtime.records, client, settings)
    assert not report.clean
    assert "1 messages have a delivery status but are not sent" in "\n".join(report.lines())
