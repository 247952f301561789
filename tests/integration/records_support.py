"""What the tests of the records share: rows read back as they are, and attempts made as a send makes them."""

from __future__ import annotations

from datetime import datetime, timezone

from messaging.domain.message import Attempt, Trigger

NOW = datetime.now(timezone.utc)
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def row(db, message_id) -> dict:
    """The message's row, every column."""
    return db.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def attempt_rows(db, message_id) -> list[dict]:
    """The message's attempts, oldest first."""
    return db.execute("SELECT * FROM message_attempts WHERE message_id = %s ORDER BY id", (message_id,)).fetchall()


def an_attempt(message_id, number=1, trigger=Trigger.SCHEDULED, **changes) -> Attempt:
    values = dict(
        message_id=message_id, attempt=number, trigger=trigger, started_at=NOW, duration_ms=12.5,
        http_status=202, error_class=None, retry_after_seconds=None, answer='{"message": "Accepted"}',
    )  # fmt: skip
    return Attempt(**{**values, **changes})


def claimed_and_started(runtime, make_message, **columns):
    """A new message, claimed and started as a send task starts it: its id, token and Outgoing."""
    message_id = make_message(**columns)
    [claim] = runtime.records.claim_due(1)
    outgoing = runtime.records.start_sending(message_id, claim.token)
    return message_id, claim.token, outgoing
