"""The batch's claim statement: its cost at 1,000 and 1,000,000 rows, and its plan."""

from __future__ import annotations

import statistics
import time

import psycopg

from messaging.postgres.queries import QUERIES

CLAIM = QUERIES["claim_due_messages"]


def cost_ms(conn: psycopg.Connection, *, limit: int, runs: int = 30) -> float:
    """Median wall time of one claim of `limit` rows, each rolled back so every run sees the same table."""
    samples = []
    for _ in range(runs + 3):
        with conn.transaction(force_rollback=True):
            started = time.perf_counter()
            rows = conn.execute(CLAIM, {"limit": limit}).fetchall()
            samples.append(time.perf_counter() - started)
        assert len(rows) == limit, f"claimed {len(rows)} of {limit}"
    return statistics.median(samples[3:]) * 1000


def plan(conn: psycopg.Connection, *, limit: int) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of one claim, rolled back."""
    with conn.transaction(force_rollback=True):
        rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) {CLAIM}", {"limit": limit}).fetchall()
    return [row[0] for row in rows]
