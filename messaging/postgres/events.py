"""The status callbacks' outbox in PostgreSQL: batches of events handed to tasks, their outcomes, a message's history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from uuid import UUID

from psycopg_pool import ConnectionPool

from messaging.domain.events import CallbackState, Event, EventEntry, EventType, Outcome
from messaging.domain.message import Message
from messaging.postgres.pool import fetch_all, fetch_one
from messaging.postgres.records import BulkRetry

ERROR_LIMIT = 500  # characters of a callback's last error kept


@dataclass(frozen=True)
class FailedCallbacks:
    """Which failed status callbacks a retry takes: those of events that occurred in [after, before)."""

    occurred_after: datetime | None = None
    occurred_before: datetime | None = None
    limit: int = 1000


@dataclass(frozen=True)
class EventRecords:
    """message_events, over one process's pool."""

    pool: ConnectionPool

    def dispatch_batch(self, token: UUID, *, size: int, batches: int, lease_seconds: float, at_least: int = 1,
                       sends_queued: int, batches_while_sends_queued: int) -> int:
        """Hand out up to `size` events due now as the batch `token`, unless `batches` are in flight (or
        `batches_while_sends_queued`, while `sends_queued` claims wait for a worker) or fewer than `at_least` are
        due; how many."""
        rows = fetch_all(self.pool, "dispatch_callback_batch", token=token, size=size, batches=batches,
                         lease=lease_seconds, at_least=at_least, sends_queued=sends_queued,
                         batches_while_sends_queued=batches_while_sends_queued)  # fmt: skip
        return len(rows)

    def batch(self, token: UUID) -> list[tuple[Event, Message | None]]:
        """The events the batch `token` still has, oldest first, each with its message (None when deleted)."""
        return [
            (
                Event(row["event_id"], row["event_message_id"], EventType(row["event_type"]), row["event_occurred_at"],
                      row["event_attempts"]),
                Message.from_row(row) if row["id"] is not None else None,
            )
            for row in fetch_all(self.pool, "dispatched_batch", token=token)
        ]

    def record(self, token: UUID, outcomes: Sequence[Outcome], *, max_attempts: int) -> dict[UUID, CallbackState]:
        """Record a batch's outcomes in one statement; each event's new state (none for an event no longer the batch's)."""
        if not outcomes:
            return {}
        rows = fetch_all(
            self.pool,
            "record_callbacks",
            token=token,
            max_attempts=max_attempts,
            ids=[one.event_id for one in outcomes],
            posted=[one.posted for one in outcomes],
            delivered=[one.delivered for one in outcomes],
            http_status=[one.http_status for one in outcomes],
            error=[one.error[:ERROR_LIMIT] if one.error else None for one in outcomes],
            delay=[one.delay_seconds for one in outcomes],
            final=[one.final for one in outcomes],
        )
        return {row["id"]: CallbackState(row["callback_state"]) for row in rows}

    def history(self, message_id: UUID, *, limit: int = 100) -> list[EventEntry]:
        """A message's events in the order they were written, with their callbacks' state."""
        rows = fetch_all(self.pool, "list_events", message_id=message_id, limit=limit)
        return [EventEntry.from_row(row) for row in rows]

    def overdue_seconds(self) -> float:
        """How long the event waiting longest past its due time has waited (0 when none is overdue)."""
        row = fetch_one(self.pool, "callbacks_overdue")
        return float(row["seconds"]) if row else 0.0

    def retry_failed(self, which: FailedCallbacks, *, dry_run: bool = False) -> BulkRetry:
        """Make the failed callbacks `which` selects pending again, attempts reset, in one statement (only
        count them on a dry run)."""
        row = fetch_one(self.pool, "retry_failed_callbacks", **asdict(which), dry_run=dry_run)
        assert row is not None  # an aggregate always returns its row
        return BulkRetry(row["matched"], row["retried"])
