"""`python -m messaging audit`: do PostgreSQL, the Redis delivery cache and the metrics agree?

Three checks, one report line each; any disagreement makes the command exit 1.

1. Cached deliveries: every delivery cache key (`messaging:sent:<id>`, read with SCAN, never
   KEYS) names a message PostgreSQL has as `sent`. One still `sending` passes: a worker writes the cache
   first and PostgreSQL next, so that is a delivery being recorded (check 2 catches one stuck).
2. Claims: nothing is in `sending` longer than CLAIM_TIMEOUT_SECONDS. Stale claims go back to
   pending when a batch runs, once per SEND_INTERVAL_SECONDS, so a claim fails the check when
   the claim and its send (if begun) are older than the timeout plus one interval.
3. Counts: the delivery counters in Redis (messaging/redis/counters.py) are cumulative: they outlive
   rows (a TRUNCATE, a deleted message), and Redis can lose them, together with the time they
   began (`messaging:metrics:since`, set again by the first batch after that, and a few seconds
   after a process sees a Redis failover: messaging/redis/counters.py). So the check
   runs one way, over the time both cover: every message PostgreSQL records as sent by this
   service (attempts > 0) with sent_at at or after that time was counted, that is
       sent in PostgreSQL since then <= deliveries{sent} + deliveries{already_sent}.
   Counting more than PostgreSQL holds is normal (rows deleted since; a message counted when
   POSTed and again when a later claim found it in the cache). Counting fewer means a delivery
   was not counted, or Redis came back from a snapshot older than PostgreSQL's rows.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import redis

from messaging.domain.message import Status
from messaging.errors import MessagingError
from messaging.postgres import pool as postgres_pool
from messaging.postgres.receipts import ReceiptRecords
from messaging.postgres.records import Records
from messaging.redis import keys
from messaging.redis.client import connect, wrap_errors
from messaging.settings import Settings

SCAN_BATCH = 1000
SHOWN = 5  # disagreeing ids named in a report line


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


@dataclass(frozen=True)
class Report:
    counts: dict[Status, int]
    checks: list[Check]

    @property
    def clean(self) -> bool:
        return all(check.ok for check in self.checks)

    def lines(self) -> list[str]:
        totals = ", ".join(f"{status.label} {total}" for status, total in self.counts.items())
        verdict = "clean" if self.clean else "DISAGREEMENT (exit 1)"
        return [f"postgresql: {sum(self.counts.values())} messages ({totals})", *(c.line() for c in self.checks), f"audit: {verdict}"]


def run(records: Records, client: redis.Redis, settings: Settings) -> Report:
    """Run the checks against PostgreSQL and Redis."""
    stale_after = settings.claim_timeout_seconds + settings.send_interval_seconds
    return Report(
        records.count_by_status(),
        [
            cached_deliveries(records, client),
            stale_claims(records, stale_after),
            counts(records, client),
            delivered_only_when_sent(ReceiptRecords(records.pool)),
        ],
    )


def cached_deliveries(records: Records, client: redis.Redis) -> Check:
    """Every cached delivery is a message PostgreSQL has as sent (or is recording: `sending`)."""
    checked, wrong = 0, []
    for batch in _batches(_sent_keys(client), SCAN_BATCH):
        checked += len(batch)
        ids = {}
        for key in batch:
            try:
                ids[UUID(key.removeprefix(keys.SENT_PREFIX))] = key
            except ValueError:
                wrong.append(f"{key} (not a message id)")
        known = records.statuses(list(ids))
        for message_id in ids:
            status = known.get(message_id)
            if status not in (Status.SENT, Status.SENDING):
                wrong.append(f"{message_id} ({status.label if status is not None else 'not in postgresql'})")
    if wrong:
        return Check("cached deliveries", False, f"{len(wrong)} of {checked} not sent in postgresql: {_some(wrong)}")
    return Check("cached deliveries", True, f"{checked}, each sent in postgresql")


def delivered_only_when_sent(receipts: ReceiptRecords) -> Check:
    """A delivery status (a receipt, or its expiry) belongs to sent messages only."""
    wrong = receipts.delivered_unsent()
    if wrong:
        return Check("delivery receipts", False, f"{wrong} messages have a delivery status but are not sent")
    return Check("delivery receipts", True, "every message with a delivery status is sent")


def stale_claims(records: Records, older_than_seconds: float) -> Check:
    """No claim outlived the timeout by more than the interval of the batch that returns it."""
    total, oldest = records.stale_claims(older_than_seconds)
    limit = f"{older_than_seconds:g} s (claim timeout + send interval)"
    if total:
        return Check("claims", False, f"{total} in sending for over {limit}, the oldest claimed at {oldest.isoformat()}")
    return Check("claims", True, f"none in sending for over {limit}")


def counts(records: Records, client: redis.Redis) -> Check:
    """Every delivery PostgreSQL recorded since the counters began was counted (see the module's docstring)."""
    with wrap_errors():
        since_text, deliveries = client.get(keys.METRICS_SINCE), client.hgetall(keys.METRICS_DELIVERIES)
    if since_text is None:
        return Check("counts", True, "no counters yet (no batch has run since Redis began)")
    since = datetime.fromisoformat(since_text)
    counted = {outcome: int(deliveries.get(outcome, 0)) for outcome in ("sent", "already_sent")}
    recorded = records.count_sent_since(since)
    detail = (
        f"{recorded} sent in postgresql since {since.isoformat()}, "
        f"{sum(counted.values())} counted (sent {counted['sent']}, already_sent {counted['already_sent']})"
    )
    return Check("counts", recorded <= sum(counted.values()), detail)


def main(settings: Settings) -> int:
    """The command: print the report; 0 when clean, 1 on a disagreement or an unreachable service."""
    pool = postgres_pool.create_pool(settings.database_url, max_size=2, name="audit")
    client = connect(settings)
    try:
        report = run(Records(pool), client, settings)
    except MessagingError as error:
        print(f"audit failed: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
        pool.close()
    print("\n".join(report.lines()))
    return 0 if report.clean else 1


def _sent_keys(client: redis.Redis) -> Iterator[str]:
    with wrap_errors():
        yield from client.scan_iter(match=f"{keys.SENT_PREFIX}*", count=SCAN_BATCH)


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _some(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more
