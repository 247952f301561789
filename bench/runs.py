"""One drain of the benchmark: the floor, Celery's ceiling or the whole system, with its checks and its CPU."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import ceiling, data, floor, system
from bench.processes import ROLES, ReceiverProcess
from messaging.postgres.pool import pool_size as database_pool_size
from worker.factory import DEFAULT_CONCURRENCY, DEFAULT_POOL

HERE = Path(__file__).resolve().parent
LOGS = HERE / "out"
RABBITMQ_URL = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")

INTERVAL = 0.2  # beat period during the drains
BATCH = 1000  # messages claimed per period
# The floor is the best plain loop, not one held back by its thread count: with an instant receiver
# nothing waits, and many threads in one process spend their time on the interpreter lock
# (bench/PROFILE.md has the figures).
FLOOR_THREADS = 8

CPU_NOTES: list[str] = []  # one line of the "CPU per message, by process" table each


@dataclass
class Row:
    case: str
    system: str
    reference: str = "-"  # what the system is held to: the floor, the limit or the bound
    ratio: str = "-"
    target: str = "-"
    ok: bool | None = None

def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

def per_message(seconds: float, count: int) -> str:
    return f"{seconds / count * 1000:.2f} ms"

def fresh_pending(where: data.Place, count: int) -> None:
    data.reset(where)
    with data.connect(where.database_url) as conn:
        data.load_pending(conn, count)
        data.vacuum(conn)

def check_exactly_once(receiver: ReceiverProcess, count: int, who: str) -> None:
    stats = receiver.stats()
    if stats["unique"] != count or stats["duplicates"]:
        raise SystemExit(f"bench: {who} delivered {stats}, expected {count} unique and no duplicates")

@dataclass(frozen=True)
class Variant:
    """How the system's workers run: `workers` processes of `threads` threads, on a broker, with settings."""

    label: str
    workers: int
    threads: int = DEFAULT_CONCURRENCY
    broker: str = "redis"
    env: tuple[tuple[str, str], ...] = ()
    pool: str = DEFAULT_POOL

    @property
    def in_flight(self) -> int:
        return self.workers * self.threads

    def options(self) -> tuple[str, ...]:
        return ("--pool", self.pool, "--concurrency", str(self.threads))

def note_cpu(case: str, count: int, roles: dict[str, float]) -> None:
    cells = " | ".join(per_message(roles.get(role, 0.0), count) for role in ROLES)
    CPU_NOTES.append(f"| {case} | {cells} | {per_message(sum(roles.values()), count)} |")

def run_floor(where: data.Place, receiver: ReceiverProcess, *, name: str, count: int, delay_ms: int,
              threads: int) -> floor.Run:
    fresh_pending(where, count)
    receiver.prepare(delay_ms)
    log(f"{name}: floor, {count:,} messages, {threads} threads")
    plain = floor.drain(where.database_url, where.redis_url, receiver.url,
                        count=count, threads=threads, pool_size=database_pool_size(threads))
    check_exactly_once(receiver, count, "the floor")
    log(f"{name}: floor {plain.rate:.0f} msg/s")
    note_cpu(f"{name}: floor, {threads} threads", count, plain.roles)
    return plain

def run_ceiling(where: data.Place, variant: Variant, *, name: str, count: int) -> ceiling.Run:
    data.reset(where)
    log(f"{name}: Celery's ceiling, {count:,} no-op tasks, {variant.label}")
    run = ceiling.drain(broker_of(where, variant.broker), count=count, workers=variant.workers,
                        worker_options=variant.options(), log_dir=LOGS / f"ceiling {variant.label}".replace(" ", "-"))
    log(f"{name}: ceiling {run.rate:.0f} tasks/s")
    note_cpu(f"{name}: Celery's ceiling, {variant.label}", count, run.roles)
    return run

def run_system(where: data.Place, receiver: ReceiverProcess, variant: Variant, *, name: str, count: int,
               delay_ms: int) -> system.Run:
    fresh_pending(where, count)
    receiver.prepare(delay_ms)
    log(f"{name}: system, {count:,} messages, {variant.label}")
    real = system.drain(
        where, receiver.url, count=count, log_dir=LOGS / f"{name} {variant.label}".replace(" ", "-"),
        interval=INTERVAL, batch_size=BATCH, worker_options=variant.options(), workers=variant.workers,
        extra_env=dict(variant.env), broker_url=broker_of(where, variant.broker),
    )
    check_exactly_once(receiver, count, "the system")
    log(f"{name}: system {real.rate:.0f} msg/s")
    if real.callbacks_seconds is not None:
        log(f"{name}: every callback delivered after {real.callbacks_seconds:.1f} s (sends: {real.seconds:.1f} s)")
    note_cpu(f"{name}: system, {variant.label}", count, real.roles)
    return real

def broker_of(where: data.Place, broker: str) -> str:
    return RABBITMQ_URL if broker == "rabbitmq" else where.redis_url
