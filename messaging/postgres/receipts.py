"""The provider's delivery receipts in PostgreSQL: take one (applied once, in order of meaning), list a
message's, expire the sent messages that never got one, drop the receipts no message claimed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from messaging.domain import receipts
from messaging.domain.receipts import DeliveryStatus, Outcome, Receipt
from messaging.postgres.pool import fetch_all, fetch_one, wrap_errors
from messaging.postgres.queries import QUERIES


@dataclass(frozen=True)
class Taken:
    """What taking one receipt did."""

    outcome: Outcome
    recorded_sent: bool  # its message is recorded sent (else the receipt is kept until it is)
    sent_at: datetime | None
    received_at: datetime


@dataclass(frozen=True)
class ReceiptEntry:
    """One receipt in a message's history."""

    id: int
    status: str
    error_code: str | None
    reported_at: datetime | None
    received_at: datetime
    outcome: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ReceiptEntry:
        return cls(**row)


@dataclass(frozen=True)
class ReceiptRecords:
    """receipt_inbox and delivery_receipts, and the delivery columns of messages, over one process's pool."""

    pool: ConnectionPool
    # Write message.delivered, message.undelivered and message.expired to the status callbacks' outbox.
    callbacks: bool = False

    def take(self, receipt: Receipt) -> Taken:
        """Record a receipt and apply it as messaging/domain/receipts.py decides, in one transaction.

        The messageId's receipt_inbox row is locked first: mark_sent writes the same row, so a receipt
        and the send it reports are recorded one after the other, whichever comes first.
        """
        key = {"webhook_message_id": receipt.webhook_message_id}
        with wrap_errors(), self.pool.connection() as conn, conn.transaction():
            conn.execute(QUERIES["keep_receipt_key"], key)
            inbox = conn.execute(QUERIES["lock_receipt_key"], key).fetchone()
            assert inbox is not None  # inserted or found by keep_receipt_key, and locked since
            message_id, sent_at = inbox["message_id"], None
            current = inbox["delivery_status"]
            if message_id is not None:
                message = conn.execute(QUERIES["lock_delivery"], {"id": message_id}).fetchone()
                if message is not None:  # else deleted by retention while its key row stayed: nothing to apply
                    current, sent_at = message["delivery_status"], message["sent_at"]
            recorded_sent = message_id is not None
            outcome = receipts.decide(
                DeliveryStatus(current) if current else None, recorded_sent=recorded_sent, receipt=receipt
            )
            row = conn.execute(
                QUERIES["record_receipt"],
                {
                    **key,
                    "message_id": message_id,
                    "status": receipt.status.value,
                    "delivery_status": receipt.delivery_status.value,
                    "error_code": receipt.error_code,
                    "reported_at": receipt.reported_at,
                    "outcome": outcome.value,
                    "keep": outcome is Outcome.KEPT,
                    "apply": outcome is Outcome.APPLIED,
                    "callbacks": self.callbacks,
                },
            ).fetchone()
        return Taken(outcome, recorded_sent, sent_at, row["received_at"])

    def history(self, webhook_message_id: str | None, *, limit: int = 100) -> list[ReceiptEntry]:
        """The receipts taken for a provider messageId, in order of arrival."""
        if webhook_message_id is None:
            return []
        rows = fetch_all(self.pool, "list_receipts", webhook_message_id=webhook_message_id, limit=limit)
        return [ReceiptEntry.from_row(row) for row in rows]

    def expire(self, timeout_seconds: float, limit: int) -> int:
        """Up to `limit` sent messages with no final receipt `timeout_seconds` after sent_at: expired. How many."""
        return len(fetch_all(self.pool, "expire_deliveries", timeout=timeout_seconds, limit=limit, callbacks=self.callbacks))

    def drop_orphans(self, older_than_seconds: float, limit: int) -> int:
        """Up to `limit` receipts kept too long for a messageId no message has: dropped. How many."""
        row = fetch_one(self.pool, "drop_orphan_receipts", seconds=older_than_seconds, limit=limit)
        return row["total"] if row else 0

    def delivered_unsent(self) -> int:
        """Messages with a delivery status that are not sent (the audit wants none)."""
        row = fetch_one(self.pool, "count_delivered_unsent")
        return row["total"] if row else 0
