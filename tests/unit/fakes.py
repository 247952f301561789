"""Hand-written fakes of the delivery rules' ports (messaging/delivery/ports.py), for the unit tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from uuid import UUID

from messaging.delivery.ports import (
    Accepted,
    CachedDelivery,
    DeliveryFailed,
    ErrorClass,
    Preflight,
)
from messaging.domain.message import Claim, Outgoing, StaleSend, Status, Trigger
from messaging.errors import CacheUnavailable, DatabaseUnavailable
from messaging.settings import Settings

SETTINGS = Settings(max_attempts=3, retry_base_seconds=10, retry_max_seconds=600)
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


@dataclass
class Row:
    status: Status = Status.SENDING
    token: UUID | None = None
    started: bool = False
    attempts: int = 0
    last_error: str | None = None
    retry_in: float | None = None
    released_for: float | None = None
    webhook_message_id: str | None = None


@dataclass
class FakeClaims:
    """The guarded statements of messaging/postgres/queries.sql, on rows in memory."""

    rows: dict[UUID, Row] = field(default_factory=dict)
    down_for: int = 0  # the next N recording calls raise DatabaseUnavailable
    calls: list[str] = field(default_factory=list)

    def claim(self, attempts: int = 0) -> tuple[UUID, UUID]:
        message_id, token = uuid.uuid4(), uuid.uuid4()
        self.rows[message_id] = Row(token=token, attempts=attempts)
        return message_id, token

    def _ours(self, message_id: UUID, token: UUID) -> Row | None:
        row = self.rows.get(message_id)
        return row if row and row.status is Status.SENDING and row.token == token else None

    def _blip(self) -> None:
        if self.down_for:
            self.down_for -= 1
            raise DatabaseUnavailable("blip")

    def stale_sends(self, timeout_seconds: float) -> list[StaleSend]:
        """Every started claim is stale here: a test arranges only those it means to be."""
        return [
            StaleSend(message_id, row.token, row.attempts, Trigger.SCHEDULED, T0)
            for message_id, row in self.rows.items()
            if row.status is Status.SENDING and row.started and row.token is not None
        ]

    def recover_stale_claims(self, timeout_seconds: float, max_attempts: int, *, spare=None) -> list[UUID]:
        """As the query does with every claim older than the timeout: started ones count an attempt."""
        recovered = []
        for message_id, row in self.rows.items():
            if row.status is not Status.SENDING or message_id in (spare or []):
                continue
            if row.started:
                row.attempts += 1
                row.last_error = "claim expired while sending"
            row.status = Status.FAILED if row.started and row.attempts >= max_attempts else Status.PENDING
            row.token, row.started = None, False
            recovered.append(message_id)
        return recovered

    def claim_due(self, limit: int) -> list[Claim]:
        return [Claim(*self.claim(), T0) for _ in range(limit)]

    def release_claim(self, message_id: UUID, token: UUID, delay_seconds: float = 0.0, *, started: bool = False) -> bool:
        row = self._ours(message_id, token)
        if row is None or row.started != started:
            return False
        row.status, row.token, row.started, row.released_for = Status.PENDING, None, False, delay_seconds
        return True

    def start_sending(self, message_id: UUID, token: UUID) -> Outgoing | None:
        row = self._ours(message_id, token)
        if row is None or row.started:
            return None
        row.started = True
        return Outgoing(message_id, "hi", "+905551111111", row.attempts)

    def mark_sent(self, message_id, token, sent_at, webhook_message_id, *, attempted, attempt=None) -> bool:
        self.calls.append("mark_sent")
        self._blip()
        row = self._ours(message_id, token)
        if row is None:
            return False
        row.status, row.token, row.webhook_message_id = Status.SENT, None, webhook_message_id
        row.attempts += int(attempted)
        return True

    def record_failed_attempt(self, message_id, token, *, error, retry_in_seconds, max_attempts, final, attempt=None):
        self._blip()
        row = self._ours(message_id, token)
        if row is None:
            return None
        row.attempts += 1
        row.status = Status.FAILED if final or row.attempts >= max_attempts else Status.PENDING
        row.token, row.last_error, row.retry_in = None, error, retry_in_seconds
        return row.status


@dataclass
class FakeSharedState:
    enabled: bool = True
    down: bool = False
    flow_clear: bool = False
    cached: dict[UUID, CachedDelivery] = field(default_factory=dict)
    counted: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def _check(self) -> None:
        if self.down:
            raise CacheUnavailable("down")

    def is_enabled(self) -> bool:
        self._check()
        return self.enabled

    def preflight(self, message_id):
        self._check()
        return Preflight(self.enabled, self.cached.get(message_id), self.flow_clear)

    def remember_sent(self, message_id, delivery, webhook_seconds) -> None:
        self.calls.append("remember_sent")
        self._check()
        self.cached[message_id] = delivery
        self.counted.append("sent")

    def cached_deliveries(self, message_ids):
        self._check()
        return {message_id: self.cached[message_id] for message_id in message_ids if message_id in self.cached}

    def count_delivery(self, outcome: str, webhook_seconds) -> None:
        self.counted.append(outcome)

    def count_batch(self, claimed: int, recovered: int) -> None:
        pass


@dataclass
class FakeProvider:
    answer: Accepted | Exception = field(default_factory=lambda: Accepted(202, "provider-1", 0.01))
    posted: list[UUID] = field(default_factory=list)

    def send(self, message_id: UUID, to: str, content: str) -> Accepted:
        self.posted.append(message_id)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@dataclass
class FakeClock:
    """`time.monotonic` and `time.sleep` for code that reads the clock: each reading is `step` later than
    the one before, and a sleep refuses a negative length as the real one does."""

    now: float = 100.0
    step: float = 0.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        self.slept.append(seconds)
        self.now += seconds


def transient(retry_after: float | None = None) -> DeliveryFailed:
    return DeliveryFailed("HTTP 503", transient=True, error_class=ErrorClass.HTTP_STATUS, retry_after=retry_after)


PERMANENT = DeliveryFailed("HTTP 400", transient=False, error_class=ErrorClass.HTTP_STATUS)
