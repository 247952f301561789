"""Retention, a small batch at a time: messages in a final state older than MESSAGE_RETENTION_DAYS go
with their attempts, and attempts older than ATTEMPT_RETENTION_DAYS go on their own."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from messaging.errors import MessagingError
from messaging.postgres import pool as postgres_pool
from messaging.postgres.records import Records
from messaging.redis.client import connect
from messaging.redis.counters import Counters
from messaging.settings import Settings

PRUNE_EVERY_SECONDS = 3600.0
# Each batch is its own short statement: row locks on these rows only, never a lock on the table.
PRUNE_BATCH = 1000
# A run stops after this many batches; the next run, an hour later, goes on.
PRUNE_MAX_BATCHES = 100


@dataclass(frozen=True)
class Pruned:
    """What one run deleted."""

    messages: int = 0
    attempts: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(self.messages + other.messages, self.attempts + other.attempts)


def prune(records: Records, settings: Settings, *, batch: int = PRUNE_BATCH, max_batches: int = PRUNE_MAX_BATCHES) -> Pruned:
    """Both retentions: the messages past MESSAGE_RETENTION_DAYS (0: none), then the attempts past ATTEMPT_RETENTION_DAYS."""
    messages = prune_messages(records, settings.message_retention_days, batch=batch, max_batches=max_batches)
    attempts = prune_attempts(records, settings.attempt_retention_days, batch=batch, max_batches=max_batches)
    return messages + Pruned(attempts=attempts)


def prune_messages(
    records: Records, retention_days: int, *, batch: int = PRUNE_BATCH, max_batches: int = PRUNE_MAX_BATCHES
) -> Pruned:
    """Delete the messages in a final state older than `retention_days` with their attempts, `batch` per statement."""
    total = Pruned()
    if retention_days == 0:
        return total
    for _ in range(max_batches):
        messages, attempts = records.prune_messages(retention_days, batch)
        total += Pruned(messages, attempts)
        if messages < batch:
            break
    return total


def prune_attempts(records: Records, retention_days: int, *, batch: int = PRUNE_BATCH, max_batches: int = PRUNE_MAX_BATCHES) -> int:
    """Delete the attempts older than `retention_days`, `batch` rows per statement; how many went."""
    return in_batches(lambda: records.prune_attempts(retention_days, batch), batch, max_batches)


def in_batches(step: Callable[[], int], batch: int, max_batches: int) -> int:
    """Run `step` (one statement touching at most `batch` rows) until it touches fewer, or `max_batches` times; the rows touched."""
    total = 0
    for _ in range(max_batches):
        done = step()
        total += done
        if done < batch:
            break
    return total


def main(settings: Settings) -> int:
    """`python -m messaging prune`: one run now, as the hourly task does it, counted in /metrics."""
    pool = postgres_pool.create_pool(settings.database_url, max_size=1, name="prune")
    client = connect(settings)
    try:
        pruned = prune(Records(pool), settings, max_batches=sys.maxsize)
        Counters(client).pruned(pruned.messages, pruned.attempts)
    except MessagingError as error:
        print(f"prune failed: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
        pool.close()
    print(f"pruned: {pruned.messages} messages, {pruned.attempts} attempts")
    return 0
