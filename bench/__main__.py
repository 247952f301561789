"""`make bench` (`python -m bench`): SPEC 7's figures in one run, printed as one table and kept in bench/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench import ceiling, claim, data, floor, latency, system
from bench.processes import ROLES, ReceiverProcess
from messaging.postgres.pool import pool_size as database_pool_size
from tests.stack import broker_unreachable
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
# The floor is the best plain loop, not one held back by its thread count: with an instant receiver
# nothing waits, and 64 threads in one process spend their time on the interpreter lock (466 and
# 511 msg/s against 721 with 8 threads, 20,000 messages, this 2-core machine). 8 is also what
# issue 14's limit was measured with.
FLOOR_THREADS = 8


CPU_NOTES: list[str] = []  # one line of the "CPU per message, by process" table each
HISTORY_HEADER = "| when | instant: system / limit | system | floor | ceiling | 200 ms: system / bound | 2 vs 1 worker | RabbitMQ: system / limit | load |"
HISTORY_MARK = "## Every run"
RABBITMQ_URL = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


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
    note_cpu(f"{name}: system, {variant.label}", count, real.roles)
    return real


def broker_of(where: data.Place, broker: str) -> str:
    return RABBITMQ_URL if broker == "rabbitmq" else where.redis_url


def limit_of(plain: float, ceiling_rate: float) -> float:
    """One task per message: no design beats 1 / (1/floor + 1/ceiling) (SPEC 7)."""
    return 1 / (1 / plain + 1 / ceiling_rate)


def instant(where: data.Place, receiver: ReceiverProcess, *, count: int, variant: Variant,
            brokers: list[str], figures: dict[str, float]) -> list[Row]:
    """The instant receiver: the floor, then per broker Celery's ceiling, the limit and the system's ratio to it."""
    name = "instant receiver"
    plain = run_floor(where, receiver, name=name, count=count, delay_ms=0, threads=FLOOR_THREADS)
    figures["floor"] = plain.rate
    rows = [Row(case=f"{name}: floor, plain loop, {FLOOR_THREADS} threads", system=f"{plain.rate:,.0f} msg/s")]
    for broker in brokers:
        shape = replace(variant, broker=broker, label=f"{variant.label}, {broker}")
        top = run_ceiling(where, shape, name=name, count=count)
        limit = limit_of(plain.rate, top.rate)
        rows.append(Row(case=f"{name}: Celery's ceiling (no-op tasks), {shape.label}", system=f"{top.rate:,.0f} tasks/s",
                        reference=f"limit {limit:,.0f} msg/s"))
        measured = [shape]
        if broker == "redis":
            # What flow control costs per message: with a limit no drain reaches, every send asks it (SPEC 8).
            measured.append(replace(shape, label=f"{shape.label}, RATE_LIMIT_PER_SECOND={HIGH_RATE_LIMIT:,}",
                                    env=(("RATE_LIMIT_PER_SECOND", str(HIGH_RATE_LIMIT)),)))
        for each in measured:
            real = run_system(where, receiver, each, name=name, count=count, delay_ms=0)
            ratio = real.rate / limit
            default = each is shape
            if default:
                figures[f"{broker} ceiling"], figures[f"{broker} system"] = top.rate, real.rate
                figures[f"{broker} instant ratio"] = ratio
            rows.append(Row(case=f"{name}, {count:,} msgs: {each.label}", system=f"{real.rate:,.0f} msg/s",
                            reference=f"limit {limit:,.0f} msg/s", ratio=f"{ratio:.2f}",
                            target=">= 0.8" if default else "-", ok=ratio >= 0.8 if default else None))
    return rows


def slow(where: data.Place, receiver: ReceiverProcess, *, count: int, variant: Variant, brokers: list[str],
         figures: dict[str, float]) -> list[Row]:
    """The 200 ms receiver: the system against the bound its POSTs in flight set, and 2 workers against 1."""
    name, delay = "receiver at 200 ms", 0.2
    rows = []
    one = replace(variant, workers=1, label=f"1 worker x {variant.threads} threads")
    rates: dict[str, float] = {}
    for each in [replace(variant, broker=b, label=f"{variant.label}, {b}") for b in brokers] + [one]:
        real = run_system(where, receiver, each, name=name, count=count, delay_ms=int(delay * 1000))
        bound = each.in_flight / delay
        rates[each.label] = real.rate
        ratio = real.rate / bound
        default = each.workers == variant.workers
        if default:
            figures[f"{each.broker} slow ratio"] = ratio
        rows.append(Row(case=f"{name}, {count:,} msgs: {each.label}", system=f"{real.rate:,.0f} msg/s",
                        reference=f"bound {bound:,.0f} msg/s ({each.in_flight} in flight)", ratio=f"{ratio:.2f}",
                        target=">= 0.95" if default else "-", ok=ratio >= 0.95 if default else None))
    scaling = rates[f"{variant.label}, redis"] / rates[one.label]
    figures["scaling"] = scaling
    rows.append(Row(case=f"{name}: {variant.workers} workers against 1 (x {variant.threads} threads each)",
                    system=f"{rates[f'{variant.label}, redis']:,.0f} / {rates[one.label]:,.0f} msg/s",
                    ratio=f"{scaling:.2f}", target=f">= {0.95 * variant.workers:.1f}",
                    ok=scaling >= 0.95 * variant.workers))
    return rows


def reference(where: data.Place, receiver: ReceiverProcess, *, count: int, cores: int) -> list[Row]:
    """Celery's own defaults, prefork with one process per core, against a floor with as many threads."""
    name = "instant receiver"
    plain = run_floor(where, receiver, name=name, count=count, delay_ms=0, threads=cores)
    prefork = Variant(f"prefork x {cores} (Celery's default pool, reference)", workers=1, threads=cores,
                      pool="prefork")
    real = run_system(where, receiver, prefork, name=name, count=count, delay_ms=0)
    return [Row(case=f"{name}, {count:,} msgs: {prefork.label}", system=f"{real.rate:,.0f} msg/s",
                reference=f"floor {plain.rate:,.0f} msg/s", ratio=f"{real.rate / plain.rate:.2f}")]


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
    parser.add_argument("--only", choices=["latency", "throughput"],
                        help="run only these rows (printed, not written)")
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
    figures: dict[str, float] = {}
    cores = os.cpu_count() or 2
    # As `make run` and compose deploy: one worker process per core, DEFAULT_CONCURRENCY threads each.
    default = Variant(f"{cores} workers x {DEFAULT_CONCURRENCY} threads (default)", workers=cores)
    missing_rabbitmq = broker_unreachable(RABBITMQ_URL)
    brokers = ["redis"] if missing_rabbitmq else ["redis", "rabbitmq"]
    if missing_rabbitmq:
        log(f"RabbitMQ rows skipped: {missing_rabbitmq}")
    with data.place() as where:
        receiver = ReceiverProcess(LOGS)
        try:
            rows += instant(where, receiver, count=args.instant, variant=default, brokers=brokers, figures=figures)
            rows += slow(where, receiver, count=args.slow, variant=default, brokers=brokers, figures=figures)
            if args.plain:
                rows += reference(where, receiver, count=args.plain, cores=cores)
        finally:
            receiver.stop()
        if args.only != "throughput":
            rows += claim_and_api(where, args.rows, plans, statements, figures)

    elapsed = time.perf_counter() - started
    table = render(rows)
    print(table)
    print(f"\n`make bench` took {elapsed:.0f} s.")
    if not args.no_write and args.only is None:
        write_results(table, plans, statements, elapsed, default, figures, missing_rabbitmq)
        print(f"Written to {RESULTS.relative_to(HERE.parent)}.")
    return 0


def claim_and_api(where: data.Place, count: int, plans: dict[str, list[str]],
                  statements: dict[str, latency.Latency], figures: dict[str, float]) -> list[Row]:
    log(f"claim: {CLAIM_LIMIT} of 1,000 pending rows")
    fresh_pending(where, 1000)
    with data.connect(where.database_url) as conn:
        small = claim.cost_ms(conn, limit=CLAIM_LIMIT)
        plans["1,000 rows (1,000 pending)"] = claim.plan(conn, limit=CLAIM_LIMIT)
    figures["rows loaded"], figures["load seconds"] = count, load_rows(where, count)
    with data.connect(where.database_url) as conn:
        big = claim.cost_ms(conn, limit=CLAIM_LIMIT)
        plans[f"{count + 1000:,} rows (1,000 pending)"] = claim.plan(conn, limit=CLAIM_LIMIT)
    growth = big / small
    rows = [Row(
        case=f"claim {CLAIM_LIMIT} rows: 1,000 -> {count + 1000:,} rows",
        system=f"{small:.2f} -> {big:.2f} ms",
        ratio=f"x{growth:.2f}",
        target="flat (< x2)",
        ok=growth < 2,
    )]
    api_rows, _, measured = api_latency(where, count)
    statements.update(measured)
    return rows + api_rows


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
    header = ["case", "system", "reference (same run)", "ratio", "target", "met"]
    body = [[r.case, r.system, r.reference, r.ratio, r.target, {True: "yes", False: "NO", None: "-"}[r.ok]] for r in rows]
    return grid(header, body)


def grid(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_results(table: str, plans: dict[str, list[str]], statements: dict[str, latency.Latency], elapsed: float,
                  default: Variant, figures: dict[str, float], missing_rabbitmq: str | None) -> None:
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    machine = f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    history = [history_line(when, figures, load), *earlier_history()]
    parts = [
        "# Benchmark results",
        "",
        f"`make bench` on {when}, {machine}; load average at the end {load}. Took {elapsed:.0f} s.",
        "",
        (f"System: real `celery -A worker worker` processes ({default.label}, pool {DEFAULT_POOL}) and "
         f"`celery -A worker beat` (SEND_INTERVAL_SECONDS={INTERVAL}, SEND_BATCH_SIZE={BATCH}) draining pending "
         f"messages into `python -m receiver`. Floor: `bench/floor.py`, a plain loop of {FLOOR_THREADS} threads, the same "
         "webhook client and receiver, no task queue. Celery's ceiling: `bench/ceiling.py`, the same workers "
         "(`celery -A bench.noop worker`: the service's settings, a task that takes one id and does nothing) "
         "draining as many tasks published as a batch publishes them. With one task per message no design beats "
         "both: the limit is 1 / (1/floor + 1/ceiling). With the 200 ms receiver the bound is the POSTs in flight "
         "over 0.2 s. Every ratio is within this one run."),
        "",
        table,
        "",
        *([f"RabbitMQ rows skipped: {missing_rabbitmq}", ""] if missing_rabbitmq else []),
        "## CPU per message, by process (same run)",
        "",
        ("Every process on the machine over the drain's seconds, divided by the messages (or tasks) drained. "
         "bench: this process (the floor's threads; the ceiling's publishing). On this 2-core machine "
         "the total decides the rate: every side runs out of cores."),
        "",
        "| case | " + " | ".join(ROLES) + " | total |",
        "|---|" + "---|" * (len(ROLES) + 1),
        *CPU_NOTES,
        "",
        "## The API rows' statements alone (through messaging.store, no HTTP)",
        "",
        f"{figures['rows loaded']:,.0f} sent rows loaded in {figures['load seconds']:.0f} s (one INSERT ... SELECT from generate_series, the "
        "indexes built after it, VACUUM ANALYZE). The API answers /messaging/status and /metrics, and the "
        "total of /messaging/sent, from counts remembered in Redis and recounted off the request path "
        "(`messaging.redis.shared_counts.Remembered`): the two full counts below run once per period, not per call.",
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
    parts += [HISTORY_MARK, "", "Every full `make bench`, newest first, met or not.", "", HISTORY_HEADER,
              "|" + "---|" * HISTORY_HEADER.count(" | ") + "---|", *history, ""]
    RESULTS.write_text("\n".join(parts))


def history_line(when: str, figures: dict[str, float], load: str) -> str:
    def ratio(key: str) -> str:
        return f"{figures[key]:.2f}" if key in figures else "-"

    def rate(key: str) -> str:
        return f"{figures[key]:,.0f}" if key in figures else "-"

    cells = [when, ratio("redis instant ratio"), rate("redis system"), rate("floor"), rate("redis ceiling"),
             ratio("redis slow ratio"), ratio("scaling"), ratio("rabbitmq instant ratio"), load]
    return "| " + " | ".join(cells) + " |"


def earlier_history() -> list[str]:
    """The "every run" lines the last RESULTS.md kept (none before the section existed)."""
    if not RESULTS.exists():
        return []
    text = RESULTS.read_text()
    if HISTORY_MARK not in text:
        return []
    section = text.split(HISTORY_MARK, 1)[1].splitlines()
    return [line for line in section if line.startswith("| 2")]

if __name__ == "__main__":
    sys.exit(main())
