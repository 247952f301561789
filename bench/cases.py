"""The benchmark's cases: the instant receiver, the 200 ms receiver, the prefork reference, the claim and the API."""

from __future__ import annotations

import time
from dataclasses import replace

from bench import claim, data, latency
from bench.processes import ReceiverProcess
from bench.runs import (
    FLOOR_THREADS,
    LOGS,
    Row,
    Variant,
    fresh_pending,
    log,
    run_ceiling,
    run_floor,
    run_system,
)

BIG = 10_000_000
OFFSET = 500_000  # the deep offset page (each call reads this many rows)
CALLS = 1000  # per API case: enough that p95 and p99 are 50 and 10 calls
CLAIM_LIMIT = 100
HIGH_RATE_LIMIT = 1_000_000  # messages per second: set, never reached


def limit_of(plain: float, ceiling_rate: float) -> float:
    """One task per message: no design beats 1 / (1/floor + 1/ceiling)."""
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
            # What flow control costs per message: with a limit no drain reaches, every send asks it.
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

# Receipts and callbacks on: the workers record each messageId for its receipts and write an event with
# each send, beat hands the events out, and the workers POST them to the receiver's /callbacks.
RECEIPTS_AND_CALLBACKS = (("DELIVERY_RECEIPTS", "on"), ("STATUS_CALLBACKS", "on"))


def receipts_and_callbacks(where: data.Place, receiver: ReceiverProcess, *, count: int, variant: Variant,
                           rounds: int) -> list[Row]:
    """The instant receiver with receipts and status callbacks on against off, in interleaved runs (off, on,
    off, on, ...), so that a machine that slows down during the case weighs on both alike; with how long
    after the last send the last callback was delivered."""
    name = "instant receiver"
    on = replace(variant, label=f"{variant.label}, receipts and callbacks on",
                 env=(*RECEIPTS_AND_CALLBACKS, ("STATUS_CALLBACK_URL", f"{receiver.base}/callbacks")))
    rates: dict[str, list[float]] = {variant.label: [], on.label: []}
    behind: list[float] = []
    for _ in range(rounds):
        for each in (variant, on):
            run = run_system(where, receiver, each, name=name, count=count, delay_ms=0)
            rates[each.label].append(run.rate)
            if run.callbacks_seconds is not None:
                behind.append(run.callbacks_seconds - run.seconds)
    off_rate, on_rate = (sorted(rates[label])[len(rates[label]) // 2] for label in (variant.label, on.label))
    ratio = on_rate / off_rate
    runs = lambda label: ", ".join(f"{rate:,.0f}" for rate in rates[label])  # noqa: E731
    lags = ", ".join(f"{seconds:.1f}" for seconds in behind)
    return [
        Row(case=f"{name}, {count:,} msgs: {variant.label} (runs: {runs(variant.label)})", system=f"{off_rate:,.0f} msg/s"),
        Row(case=f"{name}, {count:,} msgs: {on.label} (runs: {runs(on.label)}; last callback after the last send: "
                 f"{lags} s)",
            system=f"{on_rate:,.0f} msg/s", reference=f"off {off_rate:,.0f} msg/s", ratio=f"{ratio:.2f}",
            target=">= 0.9", ok=ratio >= 0.9),
    ]
