"""The delivery rules' side of flow control, with a fake of the port they own: what is held
back, what counts for the breaker, what pauses everyone, and what a batch claims."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from uuid import UUID

import pytest
import redis

from messaging.delivery import rules
from messaging.delivery.outcomes import Outcome
from messaging.delivery.ports import (
    Admission,
    DeliveryFailed,
    ErrorClass,
    Ports,
    Verdict,
)
from messaging.domain.message import Status
from messaging.errors import CacheUnavailable
from messaging.redis import flow
from tests.unit.fakes import (
    PERMANENT,
    SETTINGS,
    FakeClaims,
    FakeClock,
    FakeProvider,
    FakeSharedState,
    transient,
)

LEASE = object()


@dataclass
class FakeFlow:
    answer: Admission = field(default_factory=lambda: Admission(go=True, lease=LEASE))
    down: bool = False
    limit: int | None = None
    asked: list[bool] = field(default_factory=list)  # the `clear` each admission was asked with
    recorded: list[tuple[object, Verdict]] = field(default_factory=list)
    paused: list[float] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def admit(self, token: UUID, *, clear: bool) -> Admission:
        self.asked.append(clear)
        if self.down:
            raise CacheUnavailable("down")
        return self.answer

    def wait_for_slot(self, admission: Admission) -> None:
        self.events.append("wait_for_slot")

    def record(self, admission: Admission, verdict: Verdict, *, why: str = "") -> None:
        self.recorded.append((admission.lease, verdict))

    def pause(self, seconds: float, why: str) -> None:
        self.paused.append(seconds)

    def claimable(self, limit: int, horizon_seconds: float) -> int:
        return limit if self.limit is None else min(limit, self.limit)


def failure(status: int, retry_after: float | None = None) -> DeliveryFailed:
    return DeliveryFailed(
        f"HTTP {status}", transient=status in (429, 503), error_class=ErrorClass.HTTP_STATUS,
        retry_after=retry_after, status_code=status,
    )


@pytest.fixture
def ports() -> Ports:
    return Ports(SETTINGS, FakeClaims(), FakeSharedState(), FakeProvider(), FakeFlow())


@pytest.mark.parametrize("reason", ["rate_limit", "breaker_open", "breaker_half_open", "paused"])
def test_a_held_message_goes_back_to_pending_unsent_and_uncounted_until_flow_control_allows(ports, reason):
    ports.flow.answer = Admission(go=False, wait_seconds=12.5, reason=reason)
    message_id, token = ports.claims.claim(attempts=2)
    assert rules.deliver(ports, message_id, token).outcome is Outcome.HELD
    row = ports.claims.rows[message_id]
    assert (row.status, row.attempts, row.started, row.released_for) == (Status.PENDING, 2, False, 12.5)
    assert ports.provider.posted == [] and ports.flow.recorded == []
    assert ports.shared.counted == ["held"]


def test_an_admitted_send_waits_for_its_slot_right_before_the_post(ports):
    events = ports.flow.events
    start_sending, send = ports.claims.start_sending, ports.provider.send
    ports.claims.start_sending = lambda *args: events.append("start_sending") or start_sending(*args)
    ports.provider.send = lambda *args: events.append("post") or send(*args)
    assert rules.deliver(ports, *ports.claims.claim()).outcome is Outcome.SENT
    assert events == ["start_sending", "wait_for_slot", "post"]


def test_a_held_claim_that_is_no_longer_ours_is_skipped(ports):
    ports.flow.answer = Admission(go=False, wait_seconds=1, reason="rate_limit")
    message_id, _ = ports.claims.claim()
    assert rules.deliver(ports, message_id, UUID(int=1)).outcome is Outcome.SKIPPED


def test_flow_control_is_told_whether_the_preflight_read_said_it_was_clear(ports):
    ports.shared.flow_clear = True
    rules.deliver(ports, *ports.claims.claim())
    ports.shared.flow_clear = False
    rules.deliver(ports, *ports.claims.claim())
    assert ports.flow.asked == [True, False]


def test_nothing_is_asked_of_flow_control_when_the_message_is_not_to_be_sent(ports):
    ports.shared.enabled = False
    rules.deliver(ports, *ports.claims.claim())
    assert ports.flow.asked == []


def test_without_redis_for_flow_control_the_claim_goes_back_unsent(ports):
    ports.flow.down = True
    message_id, token = ports.claims.claim()
    assert rules.deliver(ports, message_id, token).outcome is Outcome.HELD
    assert ports.claims.rows[message_id].status is Status.PENDING
    assert ports.provider.posted == []


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (None, Verdict.HEALTHY),
        (transient(), Verdict.FAILING),
        (DeliveryFailed("ConnectionError", transient=True, error_class=ErrorClass.CONNECTION), Verdict.FAILING),
        (PERMANENT, Verdict.NEITHER),  # the message's fault, not the provider's
        (DeliveryFailed("bad header", transient=False, error_class=ErrorClass.REQUEST), Verdict.NEITHER),
    ],
)
def test_every_answer_is_reported_to_the_breaker_with_its_admission(ports, answer, verdict):
    if answer is not None:
        ports.provider.answer = answer
    rules.deliver(ports, *ports.claims.claim())
    assert ports.flow.recorded == [(LEASE, verdict)]


def test_an_admission_whose_claim_is_gone_is_given_back(ports):
    message_id, token = ports.claims.claim()
    ports.claims.rows[message_id].started = True  # another task of the claim got there first
    assert rules.deliver(ports, message_id, token).outcome is Outcome.SKIPPED
    assert ports.flow.recorded == [(LEASE, Verdict.NEITHER)]


def test_a_429_with_retry_after_pauses_everyone_and_still_counts_its_own_attempt(ports):
    ports.provider.answer = failure(429, retry_after=7)
    message_id, token = ports.claims.claim()
    assert rules.deliver(ports, message_id, token).outcome is Outcome.RETRY_LATER
    assert ports.flow.paused == [7]
    assert ports.flow.recorded == [(LEASE, Verdict.NEITHER)], "the pause is enough: the provider is up"
    row = ports.claims.rows[message_id]
    assert (row.attempts, row.retry_in) == (1, 7)


def test_the_pause_is_capped_like_any_retry_delay(ports):
    ports.provider.answer = failure(429, retry_after=86400)
    rules.deliver(ports, *ports.claims.claim())
    assert ports.flow.paused == [SETTINGS.retry_max_seconds]


@pytest.mark.parametrize("answer", [failure(429), failure(503, retry_after=30)])
def test_only_a_429_that_says_when_pauses_everyone(ports, answer):
    ports.provider.answer = answer
    rules.deliver(ports, *ports.claims.claim())
    assert ports.flow.paused == []
    assert ports.flow.recorded == [(LEASE, Verdict.FAILING)]


def test_a_batch_claims_no_more_than_flow_control_lets_through(ports):
    ports = replace(ports, settings=replace(SETTINGS, send_batch_size=10))
    ports.flow.limit = 3
    assert len(rules.run_batch(ports, lambda claims: None).claimed) == 3


def test_a_batch_claims_nothing_while_flow_control_lets_nothing_through(ports):
    ports.flow.limit = 0
    result = rules.run_batch(ports, lambda claims: pytest.fail("enqueued while held"))
    assert result.enabled and result.claimed == [] and ports.claims.rows == {}


def test_waiting_for_a_slot_never_sleeps_a_negative_time_when_the_clock_passes_the_slot_between_two_readings(
    monkeypatch,
):
    clock = FakeClock(step=0.004)  # each reading 4 ms after the one before
    monkeypatch.setattr(flow, "time", clock)
    control = flow.RedisFlowControl(redis.Redis(), replace(SETTINGS, rate_limit_per_second=10))
    slot = clock.now + 0.005  # the first reading comes 1 ms before the slot, the next 3 ms after it
    control.wait_for_slot(Admission(go=True, lease=flow.Lease("free", "token", slot)))
    assert all(seconds >= 0 for seconds in clock.slept)


def test_flow_control_that_dies_after_the_claim_started_sending_releases_it_unsent_and_uncounted(ports):
    def broken(admission):
        raise ValueError("a bug in the wait")

    ports.flow.wait_for_slot = broken
    message_id, token = ports.claims.claim(attempts=1)
    assert rules.deliver(ports, message_id, token).outcome is Outcome.NOT_SENT
    row = ports.claims.rows[message_id]
    assert (row.status, row.attempts, row.started) == (Status.PENDING, 1, False)
    assert row.released_for == SETTINGS.send_interval_seconds, "nothing was POSTed: no need to wait for a POST"
    assert ports.provider.posted == []
    assert ports.flow.recorded == [(LEASE, Verdict.NEITHER)], "its admission is given back"
