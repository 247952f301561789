"""`make bench` (`python -m bench`): the throughput and latency figures in one run, printed as one
table and kept in bench/RESULTS.md. docs/benchmarks.md says what each row measures."""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench import data, latency
from bench.cases import BIG, api_latency, claim_and_api, instant, load_rows, receipts_and_callbacks, reference, slow
from bench.processes import ReceiverProcess
from bench.report import RESULTS, growth, render, write_results
from bench.runs import CPU_NOTES, HERE, LOGS, RABBITMQ_URL, Row, Variant, log
from harness.stack import broker_unreachable
from worker.factory import DEFAULT_CONCURRENCY


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
    parser.add_argument("--only", choices=["latency", "throughput", "instant", "receipts"],
                        help="run only these rows, printed, not written (instant: the instant receiver's, "
                             "with the CPU per message, to compare two checkouts in interleaved runs; receipts: "
                             "the instant receiver with receipts and status callbacks on against off, interleaved)")
    parser.add_argument("--rounds", type=int, default=3, help="--only receipts: runs of each, off and on in turn")
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
            if args.only == "receipts":
                rows += receipts_and_callbacks(where, receiver, count=args.instant, variant=default, rounds=args.rounds)
            else:
                rows += instant(where, receiver, count=args.instant, variant=default, brokers=brokers, figures=figures)
            if args.only not in ("instant", "receipts"):
                rows += slow(where, receiver, count=args.slow, variant=default, brokers=brokers, figures=figures)
            if args.plain and args.only not in ("instant", "receipts"):
                rows += reference(where, receiver, count=args.plain, cores=cores)
        finally:
            receiver.stop()
        if args.only is None:
            rows += claim_and_api(where, args.rows, plans, statements, figures)

    elapsed = time.perf_counter() - started
    table = render(rows)
    print(table)
    print(f"\n`make bench` took {elapsed:.0f} s.")
    if args.only in ("instant", "receipts"):
        print("\nCPU per message, by process:\n" + "\n".join(CPU_NOTES))
    if not args.no_write and args.only is None:
        write_results(table, plans, statements, elapsed, default, figures, missing_rabbitmq)
        print(f"Written to {RESULTS.relative_to(HERE.parent)}.")
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
