"""What the delivery rules need from the world, as protocols and the values that cross them.

The adapters implement these: PostgreSQL's `Records` (the `Claims` port), Redis's shared state
and flow control, the provider's webhook client. Unit tests pass fakes of their own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from messaging.domain.message import Attempt, Claim, Outgoing, StaleSend, Status
from messaging.errors import MessagingError
from messaging.settings import Settings


class ErrorClass(str, enum.Enum):
    """Why an attempt failed, in a word: what an operator filters attempts by."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_STATUS = "http_status"
    REQUEST = "request"  # the provider's library refused to make the request


@dataclass(frozen=True)
class Accepted:
    """The webhook took the message."""

    status_code: int
    webhook_message_id: str | None
    seconds: float
    answer: str = ""


class DeliveryFailed(MessagingError):
    """The webhook did not take the message."""

    def __init__(
        self,
        reason: str,
        *,
        transient: bool,
        error_class: ErrorClass,
        retry_after: float | None = None,
        seconds: float = 0.0,
        status_code: int | None = None,
        answer: str = "",
    ):
        self.reason = reason
        self.transient = transient
        self.error_class = error_class
        self.retry_after = retry_after
        self.seconds = seconds
        self.status_code = status_code
        self.answer = answer
        super().__init__(reason)


class NotSent(MessagingError):
    """The request could not be made, and nothing of it left: the fault is not the message's (a setting, most often)."""

    def __init__(self, reason: str, *, setting: str | None = None) -> None:
        self.reason = reason
        self.setting = setting  # the variable at fault, when known
        super().__init__(reason)


@dataclass(frozen=True)
class CachedDelivery:
    """An earlier delivery of a message, as the delivery cache remembers it (None: not known)."""

    sent_at: datetime | None
    webhook_message_id: str | None


@dataclass(frozen=True)
class Preflight:
    """What a send reads before it POSTs, in one round trip."""

    enabled: bool
    cached: CachedDelivery | None = None
    flow_clear: bool = False  # flow control said it need not be asked (breaker closed and healthy, no pause)


class Verdict(enum.Enum):
    """What an answer says about the provider, for the circuit breaker."""

    HEALTHY = "healthy"  # 2xx
    FAILING = "failing"  # a transient failure: 5xx, 408, 429, connection refused or reset, timeout
    NEITHER = "neither"  # another 4xx (the message's fault) or nothing sent


@dataclass(frozen=True)
class Admission:
    """Flow control's answer to "may this claim be POSTed now?"."""

    go: bool
    wait_seconds: float = 0.0  # held: when it may go
    reason: str = ""  # held: rate_limit, paused, breaker_open, breaker_half_open, breaker_watching, redis_down
    lease: Any = None  # what `record` needs to settle this admission; opaque to the rules


GO = Admission(go=True)


class Claims(Protocol):
    """A claim's statements on the messages table, as the rules use them (messaging.postgres.records.Records)."""

    def stale_sends(self, timeout_seconds: float) -> list[StaleSend]: ...
    def recover_stale_claims(
        self, timeout_seconds: float, max_attempts: int, *, spare: list[UUID] | None = None
    ) -> list[UUID]: ...
    def claim_due(self, limit: int) -> list[Claim]: ...
    def release_claim(
        self, message_id: UUID, token: UUID, delay_seconds: float = 0.0, *, started: bool = False
    ) -> bool: ...
    def start_sending(self, message_id: UUID, token: UUID) -> Outgoing | None: ...
    def mark_sent(
        self,
        message_id: UUID,
        token: UUID,
        sent_at: datetime | None,
        webhook_message_id: str | None,
        *,
        attempted: bool,
        attempt: Attempt | None = None,
    ) -> bool: ...
    def record_failed_attempt(
        self,
        message_id: UUID,
        token: UUID,
        *,
        error: str,
        retry_in_seconds: float,
        max_attempts: int,
        final: bool,
        attempt: Attempt | None = None,
    ) -> Status | None: ...


class SharedState(Protocol):
    """What every worker shares for the rules: the switch, the delivery cache and the counters
    (messaging.redis.shared_state.RedisSharedState).

    All but counting raise CacheUnavailable; counting never fails a delivery.
    """

    def is_enabled(self) -> bool: ...
    def preflight(self, message_id: UUID) -> Preflight: ...
    def remember_sent(self, message_id: UUID, delivery: CachedDelivery, webhook_seconds: float) -> None: ...
    def cached_deliveries(self, message_ids: list[UUID]) -> dict[UUID, CachedDelivery]: ...
    def count_delivery(self, outcome: str, webhook_seconds: float | None) -> None: ...
    def count_batch(self, claimed: int, recovered: int) -> None: ...


class Provider(Protocol):
    """The SMS provider's webhook (messaging.provider.webhook.WebhookClient)."""

    def send(self, message_id: UUID, to: str, content: str) -> Accepted:
        """POST one message; raise DeliveryFailed saying whether a later attempt may succeed, or NotSent
        when the request could not be made at all."""
        ...


class FlowControl(Protocol):
    """One rate limit and one circuit breaker shared by every worker (messaging.redis.flow.RedisFlowControl).

    `admit` raises CacheUnavailable; recording and pausing never fail a delivery.
    """

    def admit(self, token: UUID, *, clear: bool) -> Admission: ...
    def wait_for_slot(self, admission: Admission) -> None: ...
    def record(self, admission: Admission, verdict: Verdict, *, why: str = "") -> None: ...
    def pause(self, seconds: float, why: str) -> None: ...
    def claimable(self, limit: int, horizon_seconds: float) -> int: ...


class Unlimited:
    """No flow control: every send may go."""

    def admit(self, token: UUID, *, clear: bool) -> Admission:
        return GO

    def wait_for_slot(self, admission: Admission) -> None:
        pass

    def record(self, admission: Admission, verdict: Verdict, *, why: str = "") -> None:
        pass

    def pause(self, seconds: float, why: str) -> None:
        pass

    def claimable(self, limit: int, horizon_seconds: float) -> int:
        return limit


@dataclass(frozen=True)
class Ports:
    """Everything the rules talk to; messaging.runtime wires the real ones, unit tests fakes."""

    settings: Settings
    claims: Claims
    shared: SharedState
    provider: Provider
    flow: FlowControl = field(default_factory=Unlimited)
