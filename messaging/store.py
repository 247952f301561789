"""The messages table's operations, one named query each; rows become domain objects here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from psycopg_pool import ConnectionPool

from messaging import db
from messaging.models import Claim, Message, Outgoing, Status


def claim_due(pool: ConnectionPool, limit: int) -> list[Claim]:
    """Claim up to `limit` due pending messages in one statement, oldest first."""
    rows = db.fetch_all(pool, "claim_due_messages", limit=limit)
    claims = [Claim(row["id"], row["claim_token"], row["created_at"]) for row in rows]
    return sorted(claims, key=lambda claim: (claim.created_at, claim.message_id))


def recover_stale_claims(pool: ConnectionPool, timeout_seconds: float, max_attempts: int) -> list[UUID]:
    """Return claims older than the timeout to pending; the ids of those returned."""
    rows = db.fetch_all(pool, "recover_stale_claims", timeout=timeout_seconds, max_attempts=max_attempts)
    return [row["id"] for row in rows]


def start_sending(pool: ConnectionPool, message_id: UUID, token: UUID) -> Outgoing | None:
    """Mark a claim in flight; None when this claim is not (or no longer) the task's to send."""
    row = db.fetch_one(pool, "start_sending", id=message_id, token=token)
    return Outgoing(**row) if row else None


def release_claim(pool: ConnectionPool, message_id: UUID, token: UUID, delay_seconds: float = 0.0) -> bool:
    """Give an unstarted claim back to pending, due after `delay_seconds`; False when it was not ours to release."""
    return db.fetch_one(pool, "release_claim", id=message_id, token=token, delay=delay_seconds) is not None


def mark_sent(
    pool: ConnectionPool,
    message_id: UUID,
    token: UUID,
    sent_at: datetime,
    webhook_message_id: str | None,
    *,
    attempted: bool = True,
) -> bool:
    """Record a delivery made under this claim; False when the claim is no longer the message's."""
    row = db.fetch_one(
        pool,
        "mark_sent",
        id=message_id,
        token=token,
        sent_at=sent_at,
        webhook_message_id=webhook_message_id,
        attempted=int(attempted),
    )
    return row is not None


def record_failed_attempt(
    pool: ConnectionPool,
    message_id: UUID,
    token: UUID,
    *,
    error: str,
    retry_in_seconds: float,
    max_attempts: int,
    final: bool,
) -> Status | None:
    """Count a failed attempt; the message's new status, or None if the claim was not ours."""
    row = db.fetch_one(
        pool,
        "record_failed_attempt",
        id=message_id,
        token=token,
        error=error[:500],
        delay=retry_in_seconds,
        max_attempts=max_attempts,
        final=final,
    )
    return Status(row["sending_status"]) if row else None


def get(pool: ConnectionPool, message_id: UUID) -> Message | None:
    row = db.fetch_one(pool, "get_message", id=message_id)
    return Message.from_row(row) if row else None


def insert(pool: ConnectionPool, recipient_phone_number: str, content: str) -> Message:
    row = db.fetch_one(pool, "insert_message", recipient_phone_number=recipient_phone_number, content=content)
    assert row is not None  # INSERT ... RETURNING always returns the row
    return Message.from_row(row)


def retry_failed(pool: ConnectionPool, message_id: UUID) -> Message | None:
    """Put a failed message back to pending; None when it is not failed."""
    row = db.fetch_one(pool, "retry_failed", id=message_id)
    return Message.from_row(row) if row else None


def count_by_status(pool: ConnectionPool) -> dict[Status, int]:
    counts = {status: 0 for status in Status}
    for row in db.fetch_all(pool, "count_by_status"):
        counts[Status(row["sending_status"])] = row["total"]
    return counts


def count_in_status(pool: ConnectionPool, status: Status, *, up_to: int | None = None) -> int:
    """How many messages are in `status`; with `up_to`, stop counting there (cheap at any size)."""
    if up_to is None:
        row = db.fetch_one(pool, "count_in_status", status=int(status))
    else:
        row = db.fetch_one(pool, "count_in_status_up_to", status=int(status), cap=up_to)
    return row["total"] if row else 0


def page(
    pool: ConnectionPool,
    status: Status,
    *,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, UUID] | None = None,
) -> list[Message]:
    """A page of sent or failed messages, newest first, by offset or after a keyset cursor."""
    name = {Status.SENT: "list_sent", Status.FAILED: "list_failed"}[status]
    if after is None:
        rows = db.fetch_all(pool, name, limit=limit, offset=offset)
    else:
        rows = db.fetch_all(pool, f"{name}_after", limit=limit, after_time=after[0], after_id=after[1])
    return [Message.from_row(row) for row in rows]


@dataclass(frozen=True)
class Records:
    """The delivery rules' view of the messages table (`delivery.Records`), over one pool."""

    pool: ConnectionPool

    def recover_stale_claims(self, timeout_seconds: float, max_attempts: int) -> list[UUID]:
        return recover_stale_claims(self.pool, timeout_seconds, max_attempts)

    def claim_due(self, limit: int) -> list[Claim]:
        return claim_due(self.pool, limit)

    def release_claim(self, message_id: UUID, token: UUID, delay_seconds: float = 0.0) -> bool:
        return release_claim(self.pool, message_id, token, delay_seconds)

    def start_sending(self, message_id: UUID, token: UUID) -> Outgoing | None:
        return start_sending(self.pool, message_id, token)

    def mark_sent(
        self, message_id: UUID, token: UUID, sent_at: datetime, webhook_message_id: str | None, *, attempted: bool
    ) -> bool:
        return mark_sent(self.pool, message_id, token, sent_at, webhook_message_id, attempted=attempted)

    def record_failed_attempt(
        self, message_id: UUID, token: UUID, *, error: str, retry_in_seconds: float, max_attempts: int, final: bool
    ) -> Status | None:
        return record_failed_attempt(
            self.pool,
            message_id,
            token,
            error=error,
            retry_in_seconds=retry_in_seconds,
            max_attempts=max_attempts,
            final=final,
        )
