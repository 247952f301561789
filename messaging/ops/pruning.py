"""The attempt history's upkeep: attempts older than ATTEMPT_RETENTION_DAYS go, a small batch at a time."""

from __future__ import annotations

from messaging.postgres.records import Records

PRUNE_EVERY_SECONDS = 3600.0
# Each batch is its own short statement: row locks on these rows only, never a lock on the table.
PRUNE_BATCH = 1000
# A run stops after this many batches; the next run, an hour later, goes on.
PRUNE_MAX_BATCHES = 100


def prune(records: Records, retention_days: int, *, batch: int = PRUNE_BATCH, max_batches: int = PRUNE_MAX_BATCHES) -> int:
    """Delete the attempts older than `retention_days`, `batch` rows per statement; how many went."""
    total = 0
    for _ in range(max_batches):
        deleted = records.prune_attempts(retention_days, batch)
        total += deleted
        if deleted < batch:
            break
    return total
