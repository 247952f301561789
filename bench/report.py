"""The benchmark's report: the table, and bench/RESULTS.md with the history of every full run."""

from __future__ import annotations

import datetime
import os
import platform

from bench import latency
from bench.processes import ROLES
from bench.runs import BATCH, CPU_NOTES, FLOOR_THREADS, HERE, INTERVAL, Row, Variant
from worker.factory import DEFAULT_POOL

RESULTS = HERE / "RESULTS.md"
HISTORY_HEADER = "| when | instant: system / limit | system | floor | ceiling | 200 ms: system / bound | 2 vs 1 worker | RabbitMQ: system / limit | load |"
HISTORY_MARK = "## Every run"


def render(rows: list[Row]) -> str:
    header = ["case", "system", "reference (same run)", "ratio", "target", "met"]
    body = [[r.case, r.system, r.reference, r.ratio, r.target, {True: "yes", False: "NO", None: "-"}[r.ok]] for r in rows]
    return grid(header, body)

def grid(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)

def growth(by_size: dict[int, dict[str, latency.Latency]]) -> str:
    """p50 and p95 of each API case at each size, and the p95 at the largest over the smallest."""
    counts = list(by_size)
    header = ["case", *(f"{count:,} rows" for count in counts), "p95 growth"]
    body = []
    for kind in by_size[counts[0]]:
        cells = [f"{by_size[c][kind].p50_ms:.1f} / {by_size[c][kind].p95_ms:.1f} ms" for c in counts]
        body.append([kind, *cells, f"x{by_size[counts[-1]][kind].p95_ms / by_size[counts[0]][kind].p95_ms:.2f}"])
    return grid(header, body)

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
        "## The API rows' statements alone (through Records, no HTTP)",
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
