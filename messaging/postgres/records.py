"""The messages, their attempts and the service's own keys in PostgreSQL: one method per operation, each a named query.

Rows become domain objects here. `Records` is also what the delivery rules use through their
`Records` port (messaging/delivery/ports.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg_pool import ConnectionPool

from messaging.domain import encoding
from messaging.domain.message import Attempt, Claim, Message, Outgoing, StaleSend, Status, Trigger
from messaging.postgres.pool import fetch_all, fetch_one

ANSWER_BYTES = 1024
ATTEMPT_COLUMNS = (
    "attempt", "trigger", "started_at", "duration_ms", "http_status", "error_class", "retry_after_seconds", "answer",
)  # fmt: skip
LISTS = {Status.SENT: "list_sent", Status.FAILED: "list_failed"}


@dataclass(frozen=True)
class FailedFilter:
    """Which failed messages a bulk retry takes: failed in [after, before), last_error containing a text."""

    failed_after: datetime | None = None
    failed_before: datetime | None = None
    error_contains: str | None = None
    limit: int = 1000


@dataclass(frozen=True)
class BulkRetry:
    matched: int
    retried: int


@dataclass(frozen=True)
class Records:
    """The messages table and message_attempts, over one process's pool."""

    pool: ConnectionPool
    # Record each provider messageId for the delivery receipts (RECEIPT_SIGNING_SECRET set).
    receipts: bool = False
    # Write an event to the status callbacks' outbox with each change of state (STATUS_CALLBACKS on).
    callbacks: bool = False

    # --- a claim's life: claimed by a batch, sent (or released, or failed) by one task --------

    def claim_due(self, limit: int) -> list[Claim]:
        """Claim due pending messages in one statement, oldest due first: up to `limit` less the claims
        still waiting for a worker (a batch adds no more to a queue the workers have not caught up with)."""
        rows = fetch_all(self.pool, "claim_due_messages", limit=limit)
        claims = [Claim(row["id"], row["claim_token"], row["due_at"]) for row in rows]
        return sorted(claims, key=lambda claim: (claim.due_at, claim.message_id))

    def stale_sends(self, timeout_seconds: float) -> list[StaleSend]:
        """Claims that started sending longer ago than the timeout and recorded no outcome."""
        rows = fetch_all(self.pool, "stale_sends", timeout=timeout_seconds)
        return [
            StaleSend(row["id"], row["claim_token"], row["attempts"], Trigger(row["attempt_trigger"]), row["sending_started_at"])
            for row in rows
        ]

    def recover_stale_claims(
        self, timeout_seconds: float, max_attempts: int, *, spare: list[UUID] | None = None
    ) -> list[UUID]:
        """Return claims older than the timeout to pending, but those in `spare`; the ids of those returned."""
        rows = fetch_all(
            self.pool,
            "recover_stale_claims",
            timeout=timeout_seconds,
            max_attempts=max_attempts,
            spare=spare or [],
            callbacks=self.callbacks,
        )
        return [row["id"] for row in rows]

    def start_sending(self, message_id: UUID, token: UUID) -> Outgoing | None:
        """Mark a claim in flight; None when this claim is not (or no longer) the task's to send."""
        row = fetch_one(self.pool, "start_sending", id=message_id, token=token)
        return Outgoing.from_row(row) if row else None

    def release_claim(
        self, message_id: UUID, token: UUID, delay_seconds: float = 0.0, *, started: bool = False
    ) -> bool:
        """Give a claim back to pending unsent, due after `delay_seconds`: an unstarted one, or with `started`
        one this task started sending; False when it was not ours to release at that stage."""
        row = fetch_one(self.pool, "release_claim", id=message_id, token=token, delay=delay_seconds, started=started)
        return row is not None

    def mark_sent(
        self,
        message_id: UUID,
        token: UUID,
        sent_at: datetime | None,
        webhook_message_id: str | None,
        *,
        attempted: bool = True,
        attempt: Attempt | None = None,
    ) -> bool:
        """Record a delivery made under this claim (at `sent_at`, else now), and `attempt` in the same
        statement; False when the claim is no longer the message's."""
        row = fetch_one(
            self.pool,
            "mark_sent",
            id=message_id,
            token=token,
            sent_at=sent_at,
            webhook_message_id=webhook_message_id,
            attempted=int(attempted),
            receipts=self.receipts,
            callbacks=self.callbacks,
            **_attempt_parameters(attempt),
        )
        return row is not None

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
    ) -> Status | None:
        """Count a failed attempt, and keep `attempt` in the same statement; the message's new
        status, or None if the claim was not ours."""
        row = fetch_one(
            self.pool,
            "record_failed_attempt",
            id=message_id,
            token=token,
            error=error[:500],
            delay=retry_in_seconds,
            max_attempts=max_attempts,
            final=final,
            callbacks=self.callbacks,
            **_attempt_parameters(attempt),
        )
        return Status(row["sending_status"]) if row else None

    # --- one message --------------------------------------------------------------------------

    def get(self, message_id: UUID) -> Message | None:
        row = fetch_one(self.pool, "get_message", id=message_id)
        return Message.from_row(row) if row else None

    def insert(self, recipient_phone_number: str, content: str, *, send_at: datetime | None = None) -> Message:
        """Store a pending message with its encoding and segments; a scheduled one is due at `send_at`."""
        measured = encoding.measure(content)
        row = fetch_one(
            self.pool,
            "insert_message",
            recipient_phone_number=recipient_phone_number,
            content=content,
            send_at=send_at,
            encoding=measured.encoding,
            segments=measured.segments,
        )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return Message.from_row(row)

    def retry_failed(self, message_id: UUID) -> Message | None:
        """Put a failed message back to pending; None when it is not failed."""
        row = fetch_one(self.pool, "retry_failed", id=message_id)
        return Message.from_row(row) if row else None

    def cancel(self, message_id: UUID) -> Message | None:
        """Cancel a pending message; None when it is not pending."""
        row = fetch_one(self.pool, "cancel_message", id=message_id, callbacks=self.callbacks)
        return Message.from_row(row) if row else None

    def list_attempts(self, message_id: UUID, *, limit: int, after_id: int = 0) -> list[Attempt]:
        """A message's delivery attempts in order, after the attempt id `after_id`."""
        rows = fetch_all(self.pool, "list_attempts", message_id=message_id, after_id=after_id, limit=limit)
        return [Attempt.from_row(row) for row in rows]

    # --- many messages ------------------------------------------------------------------------

    def retry_failed_matching(self, which: FailedFilter, *, dry_run: bool = False) -> BulkRetry:
        """Put the failed messages `which` selects back to pending in one statement (only count them on a dry run)."""
        row = fetch_one(self.pool, "retry_failed_matching", **asdict(which), dry_run=dry_run)
        assert row is not None  # an aggregate always returns its row
        return BulkRetry(row["matched"], row["retried"])

    def page(
        self,
        status: Status,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, UUID] | None = None,
        delivery: str | None = None,
    ) -> list[Message]:
        """A page of sent or failed messages, newest first, by offset or after a keyset cursor; sent ones
        may be only those of one delivery status (`delivery`, or `unknown`)."""
        name, filters = LISTS[status], {}
        if delivery is not None:
            name, filters = "list_sent_by_delivery", {"delivery_status": delivery}
        if after is None:
            rows = fetch_all(self.pool, name, limit=limit, offset=offset, **filters)
        else:
            rows = fetch_all(self.pool, f"{name}_after", limit=limit, after_time=after[0], after_id=after[1], **filters)
        return [Message.from_row(row) for row in rows]

    def prune_attempts(self, older_than_days: int, limit: int) -> int:
        """Delete up to `limit` of the oldest attempts past the retention; how many went."""
        row = fetch_one(self.pool, "prune_attempts", days=older_than_days, limit=limit)
        return row["total"] if row else 0

    def prune_messages(self, older_than_days: int, limit: int) -> tuple[int, int]:
        """Delete up to `limit` of the oldest messages in a final state past the retention, with their
        attempts; how many of each went."""
        row = fetch_one(self.pool, "prune_messages", days=older_than_days, limit=limit)
        return (row["messages"], row["attempts"]) if row else (0, 0)

    # --- counts and the audit's questions -----------------------------------------------------

    def count_by_status(self) -> dict[Status, int]:
        counts = {status: 0 for status in Status}
        for row in fetch_all(self.pool, "count_by_status"):
            counts[Status(row["sending_status"])] = row["total"]
        return counts

    def count_in_status(self, status: Status, *, up_to: int | None = None) -> int:
        """How many messages are in `status`; with `up_to`, stop counting there (cheap at any size)."""
        if up_to is None:
            row = fetch_one(self.pool, "count_in_status", status=int(status))
        else:
            row = fetch_one(self.pool, "count_in_status_up_to", status=int(status), cap=up_to)
        return row["total"] if row else 0

    def count_sent_by_delivery(self, delivery: str, *, up_to: int | None = None) -> int:
        """How many sent messages have this delivery status (or `unknown`); with `up_to`, stop counting there."""
        row = fetch_one(self.pool, "count_sent_by_delivery_up_to", delivery_status=delivery, cap=up_to)
        return row["total"] if row else 0

    def statuses(self, message_ids: list[UUID]) -> dict[UUID, Status]:
        """The status of each of these messages that exists."""
        rows = fetch_all(self.pool, "delivery_states", ids=message_ids)
        return {row["id"]: Status(row["sending_status"]) for row in rows}

    def stale_claims(self, older_than_seconds: float) -> tuple[int, datetime | None]:
        """How many claims (and their send, if begun) are older than this, and the oldest claim's time."""
        row = fetch_one(self.pool, "count_stale_claims", timeout=older_than_seconds)
        return (row["total"], row["oldest"]) if row else (0, None)

    def count_sent_since(self, since: datetime) -> int:
        """Messages this service POSTed that PostgreSQL records as sent at or after `since`."""
        row = fetch_one(self.pool, "count_sent_since", since=since)
        return row["total"] if row else 0

    # --- the service's own keys ---------------------------------------------------------------

    def service_key(self, name: str, candidate: str) -> str:
        """The key every process shares under `name`: `candidate` if this call is the first to keep one."""
        kept = fetch_one(self.pool, "keep_service_key", name=name, value=candidate)
        row = kept or fetch_one(self.pool, "service_key", name=name)
        assert row is not None  # kept now or before, and never deleted
        return row["value"]


def _attempt_parameters(attempt: Attempt | None) -> dict[str, Any]:
    """The message_attempts columns a send writes, as query parameters; log_attempt says whether to."""
    if attempt is None:
        return {**dict.fromkeys(ATTEMPT_COLUMNS), "log_attempt": False}
    values = {name: getattr(attempt, name) for name in ATTEMPT_COLUMNS}
    return {**values, "trigger": attempt.trigger.value, "answer": _storable(attempt.answer), "log_attempt": True}


def _storable(answer: str | None) -> str | None:
    """An answer PostgreSQL text can hold (no NUL, valid UTF-8), cut to its first 1 KiB."""
    if answer is None:
        return None
    cleaned = answer.replace("\x00", "\ufffd").encode("utf-8", "replace")[:ANSWER_BYTES]
    return cleaned.decode("utf-8", "ignore")  # "ignore": a character the cut split in two
