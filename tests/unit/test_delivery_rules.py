"""The delivery rules' outcome table, with fakes of the ports they own: no database, Redis or webhook."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from messaging.delivery import faults, retries, rules
from messaging.delivery.outcomes import Outcome, Report
from messaging.delivery.ports import (
    CachedDelivery,
    NotSent,
    Ports,
    Preflight,
)
from messaging.domain.message import Claim, Status
from messaging.errors import BrokerUnavailable, DatabaseUnavailable
from messaging.logs import Throttle
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
    monkeypatch.setattr(retries, "DB_RETRY_FIRST_PAUSE", 0)


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
    assert rules.deliver(ports, message_id, token) == Report(Outcome.FAILED, "HTTP 400")
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
    monkeypatch.setattr(retries, "DB_RETRY_FIRST_PAUSE", 0.05)
    monkeypatch.setattr(retries, "DB_RETRY_SECONDS", 0.1)
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


@pytest.fixture
def fault_lines(monkeypatch, caplog):
    """The `event=send_fault` lines logged from now on (a fresh throttle: no other test's line holds one back)."""
    monkeypatch.setattr(faults, "fault_log", Throttle(seconds=30))
    caplog.set_level("INFO")
    return lambda: [r.getMessage() for r in caplog.records if r.getMessage().startswith("event=send_fault ")]


def test_a_request_that_could_not_be_made_goes_back_unsent_uncounted_until_the_next_batch(ports, fault_lines):
    ports.provider.answer = NotSent("the x-ins-auth-key header's value is refused", setting="WEBHOOK_AUTH_KEY")
    message_id, token = ports.claims.claim(attempts=2)
    assert rules.deliver(ports, message_id, token).outcome is Outcome.NOT_SENT
    row = ports.claims.rows[message_id]
    assert (row.status, row.attempts, row.token, row.started) == (Status.PENDING, 2, None, False)
    assert row.released_for == SETTINGS.send_interval_seconds, "not claimed again before the next batch"
    [line] = fault_lines()
    assert "setting=WEBHOOK_AUTH_KEY" in line and f"message_id={message_id}" in line


def test_a_whole_batch_that_meets_the_same_fault_logs_it_once(ports, fault_lines):
    ports.provider.answer = NotSent("the x-ins-auth-key header's value is refused", setting="WEBHOOK_AUTH_KEY")
    claims = [ports.claims.claim() for _ in range(5)]
    assert {rules.deliver(ports, *claim).outcome for claim in claims} == {Outcome.NOT_SENT}
    assert len(fault_lines()) == 1


def test_an_unexpected_error_once_the_post_may_have_left_releases_the_claim_only_after_that_post_could_have_ended(
    ports, fault_lines
):
    ports.provider.answer = RuntimeError("a bug under the POST")
    message_id, token = ports.claims.claim(attempts=2)
    assert rules.deliver(ports, message_id, token).outcome is Outcome.NOT_SENT
    row = ports.claims.rows[message_id]
    assert (row.status, row.attempts, row.token) == (Status.PENDING, 2, None)
    assert row.released_for >= SETTINGS.webhook_timeout_seconds
    assert row.released_for >= SETTINGS.send_interval_seconds
    [line] = fault_lines()
    assert "error=RuntimeError" in line and "bug under" not in line, "the error's text may hold a secret"


def test_an_unexpected_error_after_the_claim_but_before_sending_started_releases_it(ports, fault_lines):
    def broken(message_id):
        raise KeyError("a bug in the preflight")

    ports.shared.preflight = broken
    message_id, token = ports.claims.claim()
    assert rules.deliver(ports, message_id, token).outcome is Outcome.NOT_SENT
    assert ports.claims.rows[message_id].status is Status.PENDING
    assert ports.provider.posted == [] and len(fault_lines()) == 1


def test_an_unexpected_error_while_recording_a_delivery_never_releases_it_for_a_second_post(ports):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug after the answer")

    ports.claims.mark_sent = broken
    message_id, token = ports.claims.claim()
    with pytest.raises(RuntimeError):
        rules.deliver(ports, message_id, token)
    row = ports.claims.rows[message_id]
    assert (row.status, row.started) == (Status.SENDING, True), "left to claim recovery, which reads the cache"
    assert ports.shared.cached[message_id] == CachedDelivery(ports.shared.cached[message_id].sent_at, "provider-1")


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


def stale_send(ports, attempts: int):
    """A claim at this many attempts whose POST started and whose outcome was never recorded."""
    message_id, token = ports.claims.claim(attempts=attempts)
    ports.claims.start_sending(message_id, token)
    return message_id


def test_a_stale_claim_whose_delivery_is_cached_is_recorded_sent_never_failed_nor_posted_again(ports):
    message_id = stale_send(ports, attempts=SETTINGS.max_attempts - 1)
    ports.shared.cached[message_id] = CachedDelivery(T0, "from-the-cache")
    result = rules.run_batch(replace(ports, settings=replace(SETTINGS, send_batch_size=0)), lambda claims: None)
    row = ports.claims.rows[message_id]
    assert (row.status, row.webhook_message_id, row.attempts) == (Status.SENT, "from-the-cache", SETTINGS.max_attempts)
    assert result.recovered == 1 and ports.provider.posted == []


def test_a_stale_claim_the_cache_does_not_know_is_recovered_as_before(ports):
    message_id = stale_send(ports, attempts=SETTINGS.max_attempts - 1)
    rules.run_batch(replace(ports, settings=replace(SETTINGS, send_batch_size=0)), lambda claims: None)
    row = ports.claims.rows[message_id]
    assert (row.status, row.last_error) == (Status.FAILED, "claim expired while sending")


def test_without_the_cache_a_stale_send_waits_and_an_unstarted_claim_is_still_recovered(ports):
    started = stale_send(ports, attempts=SETTINGS.max_attempts - 1)
    unstarted, _ = ports.claims.claim()
    ports.shared.down = True
    assert rules.recovery.recover_stale_claims(ports) == [unstarted]
    assert ports.claims.rows[started].status is Status.SENDING, "may have been delivered: never failed blind"


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 10, 60])
def test_backoff_grows_exponentially_with_jitter_under_the_cap(attempt):
    ceiling = min(600, 10 * 2 ** (attempt - 1))
    delays = [retries.retry_delay(attempt, 10, 600) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


def test_retry_after_is_honoured_within_the_cap():
    assert retries.retry_delay(1, 10, 600, retry_after=42) == 42
    assert retries.retry_delay(1, 10, 600, retry_after=3600) == 600
