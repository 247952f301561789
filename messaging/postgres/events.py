"""The status callbacks' outbox in PostgreSQL: events handed to tasks, their outcomes, a message's history."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from psycopg_pool import ConnectionPool

from messaging.domain.events import CallbackState, Dispatch, Event, EventEntry
from messaging.postgres.pool import fetch_all, fetch_one


@dataclass(frozen=True)
class EventRecords:
    """message_events, over one process's pool."""

    pool: ConnectionPool

    def dispatch_due(self, in_flight: int, lease_seconds: float) -> list[Dispatch]:
        """Hand out the events due now, keeping at most `in_flight` handed out and unreported."""
        rows = fetch_all(self.pool, "dispatch_due_events", limit=in_flight, lease=lease_seconds)
        return [Dispatch(row["id"], row["dispatch_token"]) for row in rows]

    def dispatched(self, dispatch: Dispatch) -> Event | None:
        """The event, while this dispatch still has it; None when its lease ended and another has it."""
        row = fetch_one(self.pool, "dispatched_event", id=dispatch.event_id, token=dispatch.token)
        return Event.from_row(row) if row else None

    def record(
        self,
        dispatch: Dispatch,
        *,
        delivered: bool,
        http_status: int | None = None,
        error: str | None = None,
        retry_in_seconds: float = 0.0,
        max_attempts: int,
        final: bool = False,
    ) -> CallbackState | None:
        """Record one POST's outcome; the callback's new state, or None when the dispatch was no longer this one."""
        row = fetch_one(
            self.pool,
            "record_callback",
            id=dispatch.event_id,
            token=dispatch.token,
            delivered=delivered,
            http_status=http_status,
            error=error[:500] if error else None,
            delay=retry_in_seconds,
            max_attempts=max_attempts,
            final=final,
        )
        return CallbackState(row["callback_state"]) if row else None

    def release(self, dispatch: Dispatch, delay_seconds: float) -> None:
        """Give a handed-out event back, not POSTed and not counted, due again after `delay_seconds`."""
        fetch_one(self.pool, "release_event", id=dispatch.event_id, token=dispatch.token, delay=delay_seconds)

    def history(self, message_id: UUID, *, limit: int = 100) -> list[EventEntry]:
        """A message's events in the order they were written, with their callbacks' state."""
        rows = fetch_all(self.pool, "list_events", message_id=message_id, limit=limit)
        return [EventEntry.from_row(row) for row in rows]
