"""`make chaos` (`python -m tests.faults.chaos`): the full topology under load and random faults, and a ledger.

PostgreSQL primary and standby, a Redis master with a replica and three Sentinels, the API, two
workers and beat, and a receiver that sometimes fails, throttles or trickles. At random times a
worker or beat is SIGKILLed and restarted, Redis fails over, PostgreSQL fails over once, and (as
root) a worker's PostgreSQL connections go silent. Exit 1 when the ledger does not balance:
created = sent + failed + canceled, nothing stuck, every message the API acknowledged stored,
every sent one received, every repeat first received within a fault's window, the audit clean.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import requests
from psycopg.rows import dict_row

from harness.stack import ROOT, Stack, environment, free_port
from messaging.postgres import migrations
from receiver import Receiver
from tests.faults.network import client_ports, iptables_unusable, process_tree, silenced
from tests.faults.replicas import PostgresPair, RedisSentinels

WEBHOOK_TIMEOUT_SECONDS = 2
CLAIM_TIMEOUT_SECONDS = 5
RESULTS = ROOT / "bench" / "RESULTS.md"
RESULTS_HEADING = "## Chaos soaks"


@dataclass
class Fault:
    kind: str
    started: float  # wall clock, as the receiver stamps deliveries
    ended: float = 0.0


@dataclass
class Load:
    """Messages POSTed to the API at a steady rate; the ids it answered 201 for."""

    api: str
    per_second: float
    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        number = 0
        while not self.stopping.wait(1 / self.per_second):
            number += 1
            body = {"recipient_phone_number": f"+90532{number % 10_000_000:07d}", "content": f"chaos {number}"}
            try:
                answer = requests.post(f"{self.api}/messages", json=body, timeout=10)
            except requests.RequestException:
                self.refused += 1
                continue
            if answer.status_code == 201:
                self.acknowledged.append(answer.json()["id"])
            else:
                self.refused += 1


class Topology:
    def __init__(self, log_dir: Path) -> None:
        self.pg = PostgresPair().start(synchronous=True)
        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE messaging")
        migrations.migrate(self.pg.url("messaging"))
        self.redis = RedisSentinels().start()
        self.receiver = Receiver(delay_ms=2).start()
        self.env = dict(
            DATABASE_URL=self.pg.url("messaging"),
            REDIS_URL=self.redis.url(),
            WEBHOOK_URL=self.receiver.url,
            WEBHOOK_TIMEOUT_SECONDS=WEBHOOK_TIMEOUT_SECONDS,
            SEND_INTERVAL_SECONDS=0.5,
            SEND_BATCH_SIZE=100,
            CLAIM_TIMEOUT_SECONDS=CLAIM_TIMEOUT_SECONDS,
            RETRY_BASE_SECONDS=0.5,
            RETRY_MAX_SECONDS=5,
            MAX_ATTEMPTS=30,
            BREAKER_OPEN_SECONDS=2,
            AUTO_START="true",
            API_AUTH="off",
        )
        self.stack = Stack(environment(**self.env), log_dir)
        self.port = free_port()
        self.stack.api(self.port)
        self.workers = {name: self.stack.worker(name) for name in ("w1", "w2")}
        self.beat = self.stack.beat()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/messaging"

    def close(self) -> None:
        self.stack.stop(timeout=15)
        self.receiver.stop()
        self.redis.stop()
        self.pg.stop()


def kill_a_process(topology: Topology, rng: random.Random) -> None:
    name = rng.choice([*topology.workers, "beat"])
    process = topology.beat if name == "beat" else topology.workers[name]
    process.signal(signal.SIGKILL)
    process.wait(10)
    if name == "beat":
        topology.beat = topology.stack.beat()
    else:
        topology.workers[name] = topology.stack.worker(name)


def fail_redis_over(topology: Topology, rng: random.Random) -> None:
    old = topology.redis.kill_master()
    topology.redis.wait_new_master(old)
    topology.redis.restart(old)  # the Sentinels make it a replica of the new master
    topology.redis.wait_synced(timeout=60)


def fail_postgresql_over(topology: Topology, rng: random.Random) -> None:
    topology.pg.fail_over()


def misbehave_receiver(topology: Topology, rng: random.Random) -> None:
    topology.receiver.set_behaviour(**rng.choice([
        {"status": 503},
        {"status": 429, "retry_after": 1},
        {"trickle_ms": 40},
        {"delay_ms": 1500},
    ]))
    time.sleep(rng.uniform(5, 15))
    topology.receiver.set_behaviour(status=202, retry_after=None, trickle_ms=0, delay_ms=2)


def silence_postgresql(topology: Topology, rng: random.Random) -> None:
    worker = rng.choice(list(topology.workers.values()))
    port = topology.pg.ports[topology.pg.primary]
    with silenced(port, client_ports(port, process_tree(worker.popen.pid))):
        time.sleep(10)


def can_silence() -> bool:
    return iptables_unusable() is None


def soak(topology: Topology, minutes: float, rng: random.Random, faults: list[Fault]) -> Load:
    load = Load(topology.api, per_second=20)
    loader = threading.Thread(target=load.run, daemon=True)
    loader.start()
    kinds = [kill_a_process, fail_redis_over, misbehave_receiver] + ([silence_postgresql] if can_silence() else [])
    end = time.monotonic() + minutes * 60
    postgresql_at = time.monotonic() + rng.uniform(0.3, 0.7) * minutes * 60
    while time.monotonic() < end:
        time.sleep(min(rng.uniform(15, 45), max(0.0, end - time.monotonic())))
        if time.monotonic() >= end:
            break
        action = fail_postgresql_over if postgresql_at and time.monotonic() >= postgresql_at else rng.choice(kinds)
        postgresql_at = 0.0 if action is fail_postgresql_over else postgresql_at
        fault = Fault(action.__name__, time.time())
        print(f"{datetime.now(timezone.utc):%H:%M:%S} fault: {fault.kind}", flush=True)
        action(topology, rng)
        fault.ended = time.time()
        faults.append(fault)
    load.stopping.set()
    loader.join(15)
    return load


def settle(topology: Topology, timeout: float = 300) -> None:
    """Until nothing is pending or in flight (the load sends nothing scheduled), or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(topology.env["DATABASE_URL"], autocommit=True, row_factory=dict_row) as db:
            left = db.execute("SELECT count(*) AS n FROM messages WHERE sending_status IN (0, 3)").fetchone()["n"]
        if left == 0:
            return
        time.sleep(1)


def ledger(topology: Topology, load: Load, faults: list[Fault]) -> tuple[bool, dict[str, object]]:
    """Every figure of the ledger, and whether it balances."""
    with psycopg.connect(topology.env["DATABASE_URL"], autocommit=True, row_factory=dict_row) as db:
        by_status = {row["sending_status"]: row["n"] for row in db.execute(
            "SELECT sending_status, count(*) AS n FROM messages GROUP BY 1")}
        stuck = db.execute(
            "SELECT count(*) AS n FROM messages WHERE sending_status = 3 "
            "OR (sending_status = 0 AND next_attempt_at <= now() - interval '1 minute')"
        ).fetchone()["n"]
        sent_ids = {str(row["id"]) for row in db.execute("SELECT id FROM messages WHERE sending_status = 1")}
        stored = {str(row["id"]) for row in db.execute("SELECT id FROM messages")}
    created = sum(by_status.values())
    sent, failed, canceled = by_status.get(1, 0), by_status.get(2, 0), by_status.get(4, 0)
    accepted_first: dict[str, float] = {}
    accepted_count: dict[str, int] = {}
    for delivery in topology.receiver.deliveries():
        if delivery["status"] is not None and 200 <= delivery["status"] < 300:
            accepted_first.setdefault(delivery["key"], delivery["received_at"])
            accepted_count[delivery["key"]] = accepted_count.get(delivery["key"], 0) + 1
    repeated = [key for key, count in accepted_count.items() if count > 1]
    outside = [key for key in repeated if not any(
        fault.started - WEBHOOK_TIMEOUT_SECONDS - 1 <= accepted_first[key] <= fault.ended + WEBHOOK_TIMEOUT_SECONDS
        for fault in faults)]
    audit = subprocess.run([sys.executable, "-m", "messaging", "audit"], env=environment(**topology.env),
                           capture_output=True, text=True, timeout=120)
    figures: dict[str, object] = {
        "created": created, "acknowledged by the API": len(load.acknowledged), "refused by the API": load.refused,
        "sent": sent, "failed": failed, "canceled": canceled, "stuck": stuck,
        "acknowledged but missing": len(set(load.acknowledged) - stored),
        "sent but never received": len(sent_ids - accepted_count.keys()),
        "received twice or more": len(repeated), "repeated outside a fault's window": len(outside),
        "faults": ", ".join(f"{kind} x{sum(f.kind == kind for f in faults)}" for kind in sorted({f.kind for f in faults})),
        "audit": "clean" if audit.returncode == 0 else "DISAGREEMENT",
    }
    balanced = (
        created == sent + failed + canceled and stuck == 0 and figures["acknowledged but missing"] == 0
        and figures["sent but never received"] == 0 and not outside and audit.returncode == 0
    )
    if audit.returncode != 0:
        print(audit.stdout + audit.stderr)
    return balanced, figures


def record(minutes: float, balanced: bool, figures: dict[str, object]) -> None:
    """Append one line to bench/RESULTS.md's chaos table (made on the first run)."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    columns = ["when", "minutes", *figures, "ledger"]
    if RESULTS_HEADING not in text:
        text += (f"\n{RESULTS_HEADING}\n\nEvery `make chaos` run (tests/faults/chaos.py), newest last.\n\n"
                 f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}\n")
    row = [f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", f"{minutes:g}", *map(str, figures.values()),
           "balanced" if balanced else "NOT BALANCED"]
    RESULTS.write_text(text.rstrip("\n") + f"\n| {' | '.join(row)} |\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("CHAOS_MINUTES", "10")))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--logs", type=Path, default=Path("/tmp/messaging-chaos"))
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    args.logs.mkdir(parents=True, exist_ok=True)
    print(f"chaos: {args.minutes:g} minutes, seed {seed}, logs in {args.logs}", flush=True)
    rng = random.Random(seed)
    # A SIGTERM (timeout, kill) unwinds like Ctrl-C, so the finally below stops every server it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    topology = Topology(args.logs)
    faults: list[Fault] = []
    try:
        load = soak(topology, args.minutes, rng, faults)
        settle(topology)
        balanced, figures = ledger(topology, load, faults)
    finally:
        topology.close()
    for name, value in figures.items():
        print(f"{name:>36}: {value}")
    print("ledger balanced" if balanced else "LEDGER DOES NOT BALANCE")
    record(args.minutes, balanced, figures)
    return 0 if balanced else 1


if __name__ == "__main__":
    sys.exit(main())
