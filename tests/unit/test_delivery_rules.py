"""The delivery rules' outcome table, with fakes of the ports they own: no database, Redis or webhook."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from messaging.delivery import rules
from messaging.delivery.ports import (
    CachedDelivery,
    Ports,
    Preflight,
)
from messaging.delivery.rules import Outcome
from messaging.domain.message import Claim, Status
from messaging.errors import BrokerUnavailable, DatabaseUnavailable
from tests.unit.fakes import (
    PERMANENT,
    SETTINGS,
    T0,
    FakeClaims,
    FakeProvider,
    FakeSharedState,
    transient,
)


@pytest.fixture
def ports() -> Ports:
    return Ports(SETTINGS, FakeClaims(), FakeSharedState(), FakeProvider())


@pytest.fixture(autouse=True)
def no_pause(monkeypatch):
    monkeypatch.setattr(rules, "DB_RETRY_FIRST_PAUSE", 0)


def test_a_claimed_message_is_posted_once_and_recorded_sent(ports):
    message_id, token = ports.claims.claim()
    assert rules.deliver(ports, message_id, token).outcome is Outcome.SENT
    row = ports.claims.rows[message_id]
    assert (row.status, row.attempts, row.webhook_message_id) == (Status.SENT, 1, "provider-1")
    assert ports.provider.posted == [message_id]
    assert ports.shared.counted == ["sent"], "counted once, with the cache entry"


def test_the_cache_is_written_before_the_database(ports):
    calls: list[str] = []
    ports.shared.calls = ports.claims.calls = calls
    rules.deliver(ports, *ports.claims.claim())
    assert calls == ["remember_sent", "mark_sent"]


def test_a_second_task_of_the_same_claim_posts_nothing(ports):
    message_id, token = ports.claims.claim()
    rules.deliver(ports, message_id, token)
    ports.shared.cached.clear()  # even without the cache, the claim is used up
    assert rules.deliver(ports, message_id, token).outcome is Outcome.SKIPPED
    assert ports.provider.posted == [message_id]


def test_a_message_in_the_cache_is_recorded_without_a_post(ports):
    message_id, token = ports.claims.claim(attempts=1)
    ports.shared.cached[message_id] = CachedDelivery(T0, "earlier")
    assert rules.deliver(ports, message_id, token).outcome is Outcome.ALREADY_SENT
    row = ports.claims.rows[message_id]
    assert (row.status, row.attempts, row.webhook_message_id) == (Status.SENT, 1, "earlier")
    assert ports.provider.posted == []


def test_a_cached_message_whose_claim_is_gone_is_skipped(ports):
    message_id, _ = ports.claims.claim()
    ports.shared.cached[message_id] = CachedDelivery(T0, "earlier")
    assert rules.deliver(ports, message_id, uuid.uuid4()).outcome is Outcome.SKIPPED


def test_stopped_sending_releases_an_unstarted_claim_unsent(ports):
    ports.shared.enabled = False
    message_id, token = ports.claims.claim()
    assert rules.deliver(ports, message_id, token).outcome is Outcome.RELEASED
    assert ports.claims.rows[message_id].status is Status.PENDING
    assert ports.provider.posted == []


def test_without_the_switch_nothing_is_sent_and_the_claim_goes_back(ports):
    ports.shared.down = True
    message_id, token = ports.claims.claim()
    assert rules.deliver(ports, message_id, token).outcome is Outcome.RELEASED
    assert ports.provider.posted == []


def test_a_transient_failure_goes_back_to_pending_with_a_backoff(ports):
    ports.provider.answer = transient()
    message_id, token = ports.claims.claim()
    before = datetime.now(timezone.utc)
    report = rules.deliver(ports, message_id, token)
    assert (report.outcome, report.error) == (Outcome.RETRY_LATER, "HTTP 503")
    row = ports.claims.rows[message_id]
    assert (row.status, row.attempts, row.last_error) == (Status.PENDING, 1, "HTTP 503")
    assert 5 <= row.retry_in <= 10
    assert before + timedelta(seconds=row.retry_in) <= report.retry_at <= datetime.now(timezone.utc) + timedelta(seconds=row.retry_in)


def test_retry_after_sets_the_delay(ports):
    ports.provider.answer = transient(retry_after=42)
    message_id, token = ports.claims.claim()
    rules.deliver(ports, message_id, token)
    assert ports.claims.rows[message_id].retry_in == 42


def test_the_last_allowed_attempt_fails_for_good(ports):
    ports.provider.answer = transient()
    message_id, token = ports.claims.claim(attempts=SETTINGS.max_attempts - 1)
    assert rules.deliver(ports, message_id, token).outcome is Outcome.FAILED
    assert ports.claims.rows[message_id].status is Status.FAILED


def test_a_permanent_failure_fails_at_once(ports):
    ports.provider.answer = PERMANENT
    message_id, token = ports.claims.claim()
    assert rules.deliver(ports, message_id, token) == rules.Report(Outcome.FAILED, "HTTP 400")
    assert (ports.claims.rows[message_id].attempts, ports.shared.counted) == (1, ["failed"])


def test_a_delivery_is_recorded_even_when_the_cache_is_down(ports):
    message_id, token = ports.claims.claim()
    ports.shared.down = True
    ports.shared.preflight = lambda _: Preflight(True)
    assert rules.deliver(ports, message_id, token).outcome is Outcome.SENT
    assert ports.claims.rows[message_id].status is Status.SENT


def test_an_outcome_is_recorded_through_a_short_database_blip(ports):
    message_id, token = ports.claims.claim()
    ports.claims.down_for = 2
    assert rules.deliver(ports, message_id, token).outcome is Outcome.SENT
    assert ports.claims.rows[message_id].status is Status.SENT


def test_recording_gives_up_once_its_time_is_spent(ports, monkeypatch):
    monkeypatch.setattr(rules, "DB_RETRY_FIRST_PAUSE", 0.05)
    monkeypatch.setattr(rules, "DB_RETRY_SECONDS", 0.1)
    message_id, token = ports.claims.claim()
    ports.claims.down_for = 3
    with pytest.raises(DatabaseUnavailable):
        rules.deliver(ports, message_id, token)
    assert ports.claims.down_for == 1, "two tries: the third pause would have passed the limit"


def test_a_longer_database_outage_leaves_the_claim_to_expire(ports):
    message_id, token = ports.claims.claim()
    ports.claims.down_for = 10
    with pytest.raises(DatabaseUnavailable):
        rules.deliver(ports, message_id, token)
    assert ports.shared.cached[message_id].webhook_message_id == "provider-1", "the next claim will not POST"


def test_a_batch_claims_while_enabled_and_hands_the_claims_over(ports):
    handed: list[Claim] = []
    ports = replace(ports, settings=replace(SETTINGS, send_batch_size=2))
    result = rules.run_batch(ports, handed.extend)
    assert len(result.claimed) == len(handed) == 2


def test_a_stopped_batch_claims_nothing(ports):
    ports.shared.enabled = False
    result = rules.run_batch(ports, lambda claims: pytest.fail("enqueued while stopped"))
    assert not result.enabled and result.claimed == []


def test_a_batch_the_broker_refuses_gives_its_claims_back(ports):
    def refuse(claims: list[Claim]) -> None:
        raise BrokerUnavailable("down")

    with pytest.raises(BrokerUnavailable):
        rules.run_batch(ports, refuse)
    assert {row.status for row in ports.claims.rows.values()} == {Status.PENDING}


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 10, 60])
def test_backoff_grows_exponentially_with_jitter_under_the_cap(attempt):
    ceiling = min(600, 10 * 2 ** (attempt - 1))
    delays = [rules.retry_delay(attempt, 10, 600) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


def test_retry_after_is_honoured_within_the_cap():
    assert rules.retry_delay(1, 10, 600, retry_after=42) == 42
    assert rules.retry_delay(1, 10, 600, retry_after=3600) == 600
