"""The real API (gunicorn) over millions of sent rows: GET /messaging/sent (first page, deep offset, cursor),
and the calls that report counts, GET /messaging/status and GET /metrics."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from bench import data
from bench.processes import Stack, environment, free_port
from messaging.domain.message import Status
from messaging.postgres.pool import create_pool
from messaging.postgres.records import Records

PAGE = 20


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def percentiles(samples: list[float]) -> Latency:
    ordered = sorted(samples)

    def rank(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))] * 1000

    return Latency(statistics.median(ordered) * 1000, rank(0.95), rank(0.99), ordered[-1] * 1000)


def timed(call, calls: int, warmup: int = 10) -> Latency:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


@contextmanager
def running_api(where: data.Place, log_dir: Path) -> Iterator[tuple[requests.Session, str]]:
    """gunicorn as the README runs it, and a kept-alive session to it; its base URL."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(environment(DATABASE_URL=where.database_url, REDIS_URL=where.redis_url, AUTO_START="false"), log_dir)
    port = free_port()
    http = requests.Session()
    http.trust_env = False
    try:
        stack.api(port)
        yield http, f"http://127.0.0.1:{port}"
    finally:
        http.close()
        stack.stop()


def api_pages(where: data.Place, *, offset: int, depth: int, calls: int, log_dir: Path) -> dict[str, Latency]:
    """p50/p95/p99/max of sequential calls per page kind, client-side, over a kept-alive connection:
    `calls` for the first page and the cursor at `depth`, a tenth as many for the page at `offset`
    (it reads `offset` rows per call: the cursor is the way to page deep)."""
    with running_api(where, log_dir) as (http, base):

        def call(params):
            answer = http.get(f"{base}/messaging/sent", params=params, timeout=60)
            answer.raise_for_status()
            assert len(answer.json()["data"]) == PAGE
            return answer.json()

        # The cursor a client holds after paging down to `depth` rows: the API's own next_cursor there.
        cursor = call({"offset": depth - PAGE, "limit": PAGE})["pagination"]["next_cursor"]
        return {
            "first page": timed(lambda: call({}), calls),
            f"cursor at {depth:,}": timed(lambda: call({"cursor": cursor}), calls),
            f"offset {offset:,}": timed(lambda: call({"offset": offset}), max(10, calls // 10), warmup=2),
        }


def api_counts(where: data.Place, *, calls: int, log_dir: Path) -> dict[str, Latency]:
    """p50/p95/p99/max of `calls` sequential GET /messaging/status and GET /metrics, which report the counts by status."""
    with running_api(where, log_dir) as (http, base):

        def call(path: str) -> None:
            http.get(f"{base}{path}", timeout=30).raise_for_status()

        return {path: timed(lambda p=path: call(p), calls) for path in ("/messaging/status", "/metrics")}


def statements(where: data.Place, *, offset: int, depth: int, calls: int) -> dict[str, Latency]:
    """The same pages through Records alone (no HTTP), and the counts the API remembers
    (run once per period off the request path: a few calls each, they scan the table)."""
    pool = create_pool(where.database_url, max_size=2, name="bench")
    records = Records(pool)
    try:
        last = records.page(Status.SENT, limit=1, offset=depth - 1)[0]
        pages = {
            "records.page first page": lambda: records.page(Status.SENT, limit=PAGE + 1),
            f"records.page after the row at {depth:,}": lambda: records.page(
                Status.SENT, limit=PAGE + 1, after=(last.sent_at, last.id)
            ),
            "records.count_in_status(sent, up_to=10,001)": lambda: records.count_in_status(Status.SENT, up_to=10_001),
        }
        scans = {
            f"records.page offset {offset:,}": lambda: records.page(Status.SENT, limit=PAGE + 1, offset=offset),
            "records.count_in_status(sent)": lambda: records.count_in_status(Status.SENT),
            "records.count_by_status": lambda: records.count_by_status(),
        }
        measured = {name: timed(call, calls // 4, warmup=3) for name, call in pages.items()}
        return measured | {name: timed(call, 5, warmup=1) for name, call in scans.items()}
    finally:
        pool.close()
