"""The real API (gunicorn) at 1,000,000 sent rows: GET /messaging/sent (first page, deep offset, cursor),
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
from messaging import db, store
from messaging.models import Status

PAGE = 20


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float


def percentiles(samples: list[float]) -> Latency:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    return Latency(statistics.median(ordered) * 1000, p95 * 1000)


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


def api_pages(where: data.Place, *, depth: int, calls: int, log_dir: Path) -> dict[str, Latency]:
    """p50/p95 of 200 sequential calls per page kind, client-side, over a kept-alive connection."""
    with running_api(where, log_dir) as (http, base):

        def call(params):
            answer = http.get(f"{base}/messaging/sent", params=params, timeout=30)
            answer.raise_for_status()
            assert len(answer.json()["data"]) == PAGE
            return answer.json()

        # The cursor a client holds after paging down to `depth` rows: the API's own next_cursor there.
        cursor = call({"offset": depth - PAGE, "limit": PAGE})["pagination"]["next_cursor"]
        pages = {"first page": {}, f"offset {depth:,}": {"offset": depth}, f"cursor at {depth:,}": {"cursor": cursor}}
        return {name: timed(lambda p=params: call(p), calls) for name, params in pages.items()}


def api_counts(where: data.Place, *, calls: int, log_dir: Path) -> dict[str, Latency]:
    """p50/p95 of sequential GET /messaging/status and GET /metrics, which report the counts by status."""
    with running_api(where, log_dir) as (http, base):

        def call(path: str) -> None:
            http.get(f"{base}{path}", timeout=30).raise_for_status()

        return {path: timed(lambda p=path: call(p), calls) for path in ("/messaging/status", "/metrics")}


def statements(where: data.Place, *, depth: int, calls: int) -> dict[str, Latency]:
    """The same pages through messaging.store alone (no HTTP), and the total count the API adds to each."""
    pool = db.create_pool(where.database_url, max_size=2, name="bench")
    try:
        last = store.page(pool, Status.SENT, limit=1, offset=depth - 1)[0]
        cases = {
            "store.page first page": lambda: store.page(pool, Status.SENT, limit=PAGE + 1),
            f"store.page offset {depth:,}": lambda: store.page(pool, Status.SENT, limit=PAGE + 1, offset=depth),
            f"store.page after the row at {depth:,}": lambda: store.page(
                pool, Status.SENT, limit=PAGE + 1, after=(last.sent_at, last.id)
            ),
            "store.count_in_status(sent)": lambda: store.count_in_status(pool, Status.SENT),
        }
        return {name: timed(call, calls // 4, warmup=3) for name, call in cases.items()}
    finally:
        pool.close()
