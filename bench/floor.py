"""The floor: a plain loop with no task queue, written as carefully as the system.

Each thread claims a few due messages in one statement (FOR UPDATE SKIP LOCKED), then for each
POSTs it with the system's own kept-alive webhook client, caches the delivery in Redis and
marks it sent: the same work per message as a send task, minus the queue. Threads share one
connection pool, one Redis client and one HTTP session, as the worker does.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg_pool
import redis

from bench.processes import cpu_by_role, cpu_spent
from messaging.provider.webhook import WebhookClient
from messaging.redis import keys

CLAIM = """
WITH due AS (
    SELECT id FROM messages
    WHERE sending_status = 0 AND next_attempt_at <= now()
    ORDER BY created_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE messages AS m
SET sending_status = 3, claimed_at = now(), updated_at = now()
FROM due
WHERE m.id = due.id
RETURNING m.id, m.recipient_phone_number, m.content
"""

MARK_SENT = """
UPDATE messages
SET sending_status = 1, sent_at = %(sent_at)s, webhook_message_id = %(webhook_message_id)s,
    attempts = attempts + 1, claimed_at = NULL, updated_at = now()
WHERE id = %(id)s AND sending_status = 3
"""

CACHE_TTL_SECONDS = 86400


@dataclass(frozen=True)
class Run:
    sent: int
    seconds: float
    roles: dict[str, float]  # CPU seconds by kind of process: the floor's ("bench"), PostgreSQL's, Redis's...

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


def claim_size(count: int, threads: int) -> int:
    """Rows per claim: a few to spare round trips, few enough that no thread is left a long tail."""
    return max(1, min(16, count // (threads * 50)))


def drain(database_url: str, redis_url: str, webhook_url: str, *, count: int, threads: int, pool_size: int) -> Run:
    """Send every due pending message with `threads` threads; how long it took."""
    pool = psycopg_pool.ConnectionPool(
        database_url, min_size=pool_size, max_size=pool_size, kwargs={"autocommit": True}, open=True
    )
    pool.wait(timeout=30)
    client = redis.Redis.from_url(redis_url, max_connections=threads + 4)
    webhook = WebhookClient(webhook_url, "", 10.0, pool_size=threads)
    limit = claim_size(count, threads)
    sent = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def loop(index: int) -> None:
        start.wait()
        try:
            while True:
                with pool.connection() as conn:
                    rows = conn.execute(CLAIM, {"limit": limit}).fetchall()
                if not rows:
                    return
                for message_id, to, content in rows:
                    accepted = webhook.send(message_id, to, content)
                    sent_at = datetime.now(timezone.utc)
                    entry = json.dumps({"messageId": accepted.webhook_message_id, "sent_at": sent_at.isoformat()})
                    client.set(f"{keys.SENT_PREFIX}{message_id}", entry, ex=CACHE_TTL_SECONDS)
                    with pool.connection() as conn:
                        conn.execute(
                            MARK_SENT,
                            {"id": message_id, "sent_at": sent_at, "webhook_message_id": accepted.webhook_message_id},
                        )
                    sent[index] += 1
        except BaseException as error:  # a bench failure must show, not hang the join
            errors.append(error)

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    roles = cpu_by_role()
    started = time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    roles = cpu_spent(roles)
    webhook.close()
    client.close()
    pool.close()
    if errors:
        raise RuntimeError(f"floor failed: {errors[0]!r}") from errors[0]
    return Run(sum(sent), seconds, roles)
