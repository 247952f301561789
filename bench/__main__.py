"""`make bench` (`python -m bench`): SPEC 7's figures in one run, printed as one table and kept in bench/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import claim, data, floor, latency, system
from bench.processes import ReceiverProcess
from messaging.runtime import database_pool_size
from worker.factory import DEFAULT_CONCURRENCY, DEFAULT_POOL

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
LOGS = HERE / "out"

INTERVAL = 0.2  # beat period during the drains
BATCH = 1000  # messages claimed per period
BIG = 10_000_000
OFFSET = 500_000  # the deep offset page (each call reads this many rows)
CALLS = 1000  # per API case: enough that p95 and p99 are 50 and 10 calls
CLAIM_LIMIT = 100
HIGH_RATE_LIMIT = 1_000_000  # messages per second: set, never reached


CPU_NOTES: list[str] = []  # one "| case | floor process | floor machine | system workers | system machine |" line each


@dataclass
class Row:
    case: str
    system: str
    floor: str = "-"
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
    """How the system's workers run: `workers` processes with these options."""

    label: str
    workers: int = 1
    options: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def throughput(
    where: data.Place,
    receiver: ReceiverProcess,
    *,
    name: str,
    count: int,
    delay_ms: int,
    concurrency: int,
    target: float,
    variants: list[Variant],
) -> list[Row]:
    """The floor, then each system variant, on the same receiver with as many sends in flight; ratios."""
    fresh_pending(where, count)
    receiver.prepare(delay_ms)
    log(f"{name}: floor, {count:,} messages, {concurrency} threads")
    plain = floor.drain(
        where.database_url, where.redis_url, receiver.url,
        count=count, threads=concurrency, pool_size=database_pool_size(concurrency),
    )
    check_exactly_once(receiver, count, "the floor")
    log(f"{name}: floor {plain.rate:.0f} msg/s ({per_message(plain.cpu_seconds, count)} CPU/msg, "
        f"machine {per_message(plain.machine_cpu_seconds, count)})")
    rows = []
    for variant in variants:
        fresh_pending(where, count)
        receiver.prepare(delay_ms)
        log(f"{name}: system, {count:,} messages, {variant.label}")
        real = system.drain(
            where, receiver.url, count=count, log_dir=LOGS / f"{name} {variant.label}".replace(" ", "-"),
            interval=INTERVAL, batch_size=BATCH, worker_options=variant.options, workers=variant.workers,
            extra_env=dict(variant.env),
        )
        check_exactly_once(receiver, count, "the system")
        log(f"{name}: system {real.rate:.0f} msg/s ({per_message(real.cpu_seconds, count)} worker CPU/msg, "
            f"machine {per_message(real.machine_cpu_seconds, count)})")
        ratio = real.rate / plain.rate
        CPU_NOTES.append(
            f"| {name}, {variant.label} | {per_message(plain.cpu_seconds, count)} "
            f"| {per_message(plain.machine_cpu_seconds, count)} | {per_message(real.cpu_seconds, count)} "
            f"| {per_message(real.machine_cpu_seconds, count)} |"
        )
        rows.append(Row(
            case=f"{name}, {count:,} msgs: {variant.label}",
            system=f"{real.rate:,.0f} msg/s",
            floor=f"{plain.rate:,.0f} msg/s",
            ratio=f"{ratio:.2f}",
            target=f">= {target:.1f}" if target else "-",
            ok=ratio >= target if target else None,
        ))
    return rows


def sizes(text: str) -> list[int]:
    """`--rows`: one size or several, comma separated (1000000,5000000)."""
    return [int(part.replace("_", "")) for part in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--instant", type=int, default=20_000, help="messages for the instant receiver")
    parser.add_argument("--slow", type=int, default=5_000, help="messages for the 200 ms receiver")
    parser.add_argument("--plain", type=int, default=3_000, help="messages for the prefork reference (0: skip)")
    parser.add_argument(
        "--rows", type=sizes, default=[BIG],
        help="sent rows for the API and claim cases; with --only latency, several sizes (1000000,5000000) show the growth",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--only", choices=["latency"], help="run only the API latency rows (printed, not written)")
    args = parser.parse_args(argv)
    if args.only == "latency":
        return only_latency(args.rows)
    if len(args.rows) != 1:
        parser.error("several --rows sizes go with --only latency")
    args.rows = args.rows[0]

    LOGS.mkdir(exist_ok=True)
    started = time.perf_counter()
    rows: list[Row] = []
    plans: dict[str, list[str]] = {}
    statements: dict[str, latency.Latency] = {}
    cores = os.cpu_count() or 2
    # As `make run` and compose deploy: one worker process per core, DEFAULT_CONCURRENCY threads each.
    concurrency = cores * DEFAULT_CONCURRENCY
    with data.place() as where:
        receiver = ReceiverProcess(LOGS)
        try:
            variants = [
                Variant(f"{cores} workers x {DEFAULT_CONCURRENCY} threads (default)", workers=cores),
                Variant(f"1 worker x {concurrency} threads", options=("--concurrency", str(concurrency))),
            ]
            # What flow control costs per message: the default rows run with the rate limit off and the
            # breaker closed; this one with a limit no drain reaches, so every send asks it (SPEC 8).
            limited = Variant(
                f"{cores} workers x {DEFAULT_CONCURRENCY} threads, RATE_LIMIT_PER_SECOND={HIGH_RATE_LIMIT:,}",
                workers=cores, env=(("RATE_LIMIT_PER_SECOND", str(HIGH_RATE_LIMIT)),),
            )
            rows += throughput(where, receiver, name="instant receiver", count=args.instant, delay_ms=0,
                               concurrency=concurrency, target=0.8, variants=[*variants, limited])
            rows += throughput(where, receiver, name="receiver at 200 ms", count=args.slow, delay_ms=200,
                               concurrency=concurrency, target=0.9, variants=variants)
            if args.plain:
                # Celery's own defaults: prefork, one process per core; same flow, floor with as many threads.
                rows += throughput(where, receiver, name="instant receiver", count=args.plain, delay_ms=0,
                                   concurrency=cores, target=0,
                                   variants=[Variant(f"prefork x {cores} (Celery's default pool, reference)",
                                                     options=("--pool", "prefork", "--concurrency", str(cores)))])
        finally:
            receiver.stop()

        log(f"claim: {CLAIM_LIMIT} of 1,000 pending rows")
        fresh_pending(where, 1000)
        with data.connect(where.database_url) as conn:
            small = claim.cost_ms(conn, limit=CLAIM_LIMIT)
            plans["1,000 rows (1,000 pending)"] = claim.plan(conn, limit=CLAIM_LIMIT)

        load_seconds = load_rows(where, args.rows)
        with data.connect(where.database_url) as conn:
            big = claim.cost_ms(conn, limit=CLAIM_LIMIT)
            plans[f"{args.rows + 1000:,} rows (1,000 pending)"] = claim.plan(conn, limit=CLAIM_LIMIT)
        growth = big / small
        rows.append(Row(
            case=f"claim {CLAIM_LIMIT} rows: 1,000 -> {args.rows + 1000:,} rows",
            system=f"{small:.2f} -> {big:.2f} ms",
            ratio=f"x{growth:.2f}",
            target="flat (< x2)",
            ok=growth < 2,
        ))

        api_rows, _, statements = api_latency(where, args.rows)
        rows += api_rows

    elapsed = time.perf_counter() - started
    table = render(rows)
    print(table)
    print(f"\n`make bench` took {elapsed:.0f} s.")
    if not args.no_write:
        write_results(table, rows, plans, statements, elapsed, concurrency, (args.rows, load_seconds))
        print(f"Written to {RESULTS.relative_to(HERE.parent)}.")
    return 0


def load_rows(where: data.Place, count: int) -> float:
    """`count` sent rows and 1,000 pending, loaded as one INSERT ... SELECT from generate_series with
    the indexes built after it; the seconds it took (about 2 minutes for 10,000,000 on 2 cores)."""
    log(f"loading {count:,} sent rows and 1,000 pending")
    started = time.perf_counter()
    data.reset(where)
    with data.connect(where.database_url) as conn:
        with data.indexes_dropped(conn):
            data.load_sent(conn, count)
            data.load_pending(conn, 1000)
        data.vacuum(conn)
    seconds = time.perf_counter() - started
    log(f"loaded {count:,} rows in {seconds:.0f} s")
    return seconds


def ms(measured: latency.Latency) -> str:
    return (f"p50 {measured.p50_ms:.1f} / p95 {measured.p95_ms:.1f} / p99 {measured.p99_ms:.1f} "
            f"/ max {measured.max_ms:.0f} ms")


def api_latency(where: data.Place, count: int) -> tuple[list[Row], dict[str, latency.Latency], dict[str, latency.Latency]]:
    """The API's rows at `count` sent rows (already loaded), each case's figures by kind (the same
    kind at every size: first page, cursor, offset, status, metrics), and the statements alone."""
    rows, kinds = [], {}
    offset, depth = min(OFFSET, count // 2), count // 2
    log(f"API: GET /messaging/sent at {count:,} sent rows, {CALLS} calls per page")
    pages = latency.api_pages(where, offset=offset, depth=depth, calls=CALLS, log_dir=LOGS / "api")
    for (name, measured), kind in zip(pages.items(), ["first page", "cursor at half", "offset"]):
        deep_offset = kind == "offset"
        kinds[f"GET /sent {kind}"] = measured
        rows.append(Row(
            case=f"GET /sent {name} ({count:,} rows)",
            system=ms(measured),
            target="-" if deep_offset else "p95 < 10 ms",
            ok=None if deep_offset else measured.p95_ms < 10,
        ))
    log(f"API: GET /messaging/status and /metrics at {count:,} rows, {CALLS} calls each")
    for path, measured in latency.api_counts(where, calls=CALLS, log_dir=LOGS / "api").items():
        kinds[f"GET {path}"] = measured
        rows.append(Row(
            case=f"GET {path} ({count:,} rows)",
            system=ms(measured),
            target="p95 < 10 ms",
            ok=measured.p95_ms < 10,
        ))
    log(f"API: the statements alone at {count:,} rows")
    return rows, kinds, latency.statements(where, offset=offset, depth=depth, calls=CALLS)


def only_latency(counts: list[int]) -> int:
    """`--only latency`: the API rows alone at each size, printed (bench/RESULTS.md keeps the last full run)."""
    rows, by_size, loads = [], {}, {}
    with data.place() as where:
        for count in counts:
            loads[count] = load_rows(where, count)
            api_rows, by_size[count], statements = api_latency(where, count)
            rows += api_rows
            print(f"\nThe statements alone at {count:,} rows:")
            print("\n".join(f"  {name}: p50 {m.p50_ms:.2f} / p95 {m.p95_ms:.2f} ms" for name, m in statements.items()))
    print()
    print(render(rows))
    print("\nLoad (generate_series, indexes built after, VACUUM ANALYZE): "
          + ", ".join(f"{count:,} rows {seconds:.0f} s" for count, seconds in loads.items()))
    if len(counts) > 1:
        print()
        print(growth(by_size))
    return 0


def growth(by_size: dict[int, dict[str, latency.Latency]]) -> str:
    """p50 and p95 of each API case at each size, and the p95 at the largest over the smallest."""
    counts = list(by_size)
    header = ["case", *(f"{count:,} rows" for count in counts), "p95 growth"]
    body = []
    for kind in by_size[counts[0]]:
        cells = [f"{by_size[c][kind].p50_ms:.1f} / {by_size[c][kind].p95_ms:.1f} ms" for c in counts]
        body.append([kind, *cells, f"x{by_size[counts[-1]][kind].p95_ms / by_size[counts[0]][kind].p95_ms:.2f}"])
    return grid(header, body)


def render(rows: list[Row]) -> str:
    header = ["case", "system", "floor (same run)", "ratio", "target", "met"]
    body = [[r.case, r.system, r.floor, r.ratio, r.target, {True: "yes", False: "NO", None: "-"}[r.ok]] for r in rows]
    return grid(header, body)


def grid(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_results(table, rows, plans, statements, elapsed, concurrency, loaded) -> None:
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    machine = f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    parts = [
        "# Benchmark results",
        "",
        f"`make bench` on {when}, {machine}; load average at the end {load}. Took {elapsed:.0f} s.",
        "",
        f"System: real `celery -A worker worker` processes (pool {DEFAULT_POOL}, {concurrency} threads in all) and "
        f"`celery -A worker beat` (SEND_INTERVAL_SECONDS={INTERVAL}, SEND_BATCH_SIZE={BATCH}) draining pending "
        "messages into `python -m receiver`. Floor: `bench/floor.py`, a plain loop with the same number of "
        "threads, the same webhook client and receiver, no task queue. Ratios are system/floor from this one run.",
        "",
        table,
        "",
        "## CPU per message (same run)",
        "",
        "Process: the floor's own process; the system's worker processes. Machine: every process on the "
        "machine over the same seconds (PostgreSQL, Redis, the receiver, beat). On this 2-core machine the "
        "machine figures decide the ratio: both sides run out of cores.",
        "",
        "| case | floor process | floor machine | system workers | system machine |",
        "|---|---|---|---|---|",
        *CPU_NOTES,
        "",
        "## The API rows' statements alone (through messaging.store, no HTTP)",
        "",
        f"{loaded[0]:,} sent rows loaded in {loaded[1]:.0f} s (one INSERT ... SELECT from generate_series, the "
        "indexes built after it, VACUUM ANALYZE). The API answers /messaging/status and /metrics, and the "
        "total of /messaging/sent, from counts remembered in Redis and recounted off the request path "
        "(`messaging.cache.Cache.remembered`): the two full counts below run once per period, not per call.",
        "",
        "| statement | p50 | p95 |",
        "|---|---|---|",
        *[f"| {name} | {m.p50_ms:.2f} ms | {m.p95_ms:.2f} ms |" for name, m in statements.items()],
        "",
        "## The claim's plan",
        "",
    ]
    for name, lines in plans.items():
        parts += [f"{name}:", "", "```", *lines, "```", ""]
    RESULTS.write_text("\n".join(parts))


if __name__ == "__main__":
    sys.exit(main())
