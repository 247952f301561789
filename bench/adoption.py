"""`python -m bench.adoption`: how long `migrate` blocks readers and writers of a Go-created table of 1,000,000 rows.

Builds the Go service's table in a scratch database (60% sent, 30% pending, 10% failed,
0.1% numbers that are not E.164, a few empty contents), then runs `migrate` while a
reader (a primary-key lookup) and a writer (a Go-style INSERT) loop on the table, and a
monitor samples the table locks the migration holds. Prints, for the migration as
shipped and for the same SQL in one transaction, how long it took, the longest hold
of each lock mode, and the slowest read and write the clients saw.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from messaging.postgres import migrations

SERVER_URL = "postgresql://postgres@127.0.0.1:5432"
MIGRATOR = "adoption-bench-migrate"
GO_TABLE = """
CREATE TABLE "messages" ("id" uuid, "content" varchar(100) NOT NULL,
  "recipient_phone_number" varchar(20) NOT NULL, "sending_status" smallint NOT NULL,
  "created_at" timestamptz, "updated_at" timestamptz, PRIMARY KEY ("id"));
CREATE INDEX "idx_messages_sending_status_created_at" ON "messages" ("sending_status", "created_at");
"""
GO_ROWS = """
INSERT INTO messages (id, content, recipient_phone_number, sending_status, created_at, updated_at)
SELECT gen_random_uuid(),
       CASE WHEN g %% 5000 = 11 THEN '' ELSE 'Your verification code is ' || g END,
       CASE WHEN g %% 1000 = 7 THEN '0532' || lpad(g::text, 7, '0') ELSE '+90532' || lpad(g::text, 7, '0') END,
       CASE WHEN g %% 10 < 6 THEN 1 WHEN g %% 10 < 9 THEN 0 ELSE 2 END,
       timestamptz '2024-01-01' + g * interval '1 second',
       timestamptz '2024-01-01' + g * interval '1 second' + interval '30 seconds'
FROM generate_series(1, %(rows)s) AS g
"""
LOCKS = """
SELECT l.mode FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE l.relation = 'messages'::regclass AND l.granted AND a.application_name = %s
"""


@dataclass
class Observed:
    seconds: float = 0.0
    longest_hold: dict[str, float] = field(default_factory=dict)
    slowest: dict[str, float] = field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.adoption")
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    shipped = measure(rows, migrations.SQL_DIR)
    with tempfile.TemporaryDirectory() as scratch:
        one_transaction = measure(rows, _without_step_breaks(Path(scratch)))
    print(f"migrate on a Go-created table of {rows:,} rows")
    for name, observed in (("as shipped (5 steps)", shipped), ("one transaction", one_transaction)):
        holds = ", ".join(f"{mode} {seconds * 1000:.0f} ms" for mode, seconds in sorted(observed.longest_hold.items()))
        print(f"- {name}: {observed.seconds:.2f} s in all; longest hold per lock mode: {holds}")
        print(
            f"  slowest primary-key read {observed.slowest['read'] * 1000:.0f} ms, "
            f"slowest INSERT {observed.slowest['write'] * 1000:.0f} ms"
        )


def measure(rows: int, directory: Path) -> Observed:
    name = f"messaging_adoption_bench_{uuid.uuid4().hex[:8]}"
    url = f"{SERVER_URL}/{name}"
    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(GO_TABLE)
            conn.execute(GO_ROWS, {"rows": rows})
            conn.execute("VACUUM ANALYZE messages")
        return _migrate_under_load(url, directory)
    finally:
        with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _migrate_under_load(url: str, directory: Path) -> Observed:
    observed = Observed()
    done = threading.Event()
    threads = [
        threading.Thread(target=_client, args=(url, "read", done, observed)),
        threading.Thread(target=_client, args=(url, "write", done, observed)),
        threading.Thread(target=_lock_monitor, args=(url, done, observed)),
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    os.environ["PGAPPNAME"] = MIGRATOR  # libpq names the migrator's session, for the monitor
    try:
        started = time.perf_counter()
        migrations.migrate(url, directory)
        observed.seconds = time.perf_counter() - started
    finally:
        del os.environ["PGAPPNAME"]
        time.sleep(0.5)
        done.set()
        for thread in threads:
            thread.join()
    return observed


def _client(url: str, kind: str, done: threading.Event, observed: Observed) -> None:
    with psycopg.connect(url, autocommit=True, application_name=f"adoption-bench-{kind}") as conn:
        slowest = 0.0
        while not done.is_set():
            started = time.perf_counter()
            if kind == "read":
                conn.execute("SELECT 1 FROM messages WHERE id = %s", (uuid.uuid4(),)).fetchall()
            else:
                conn.execute(
                    "INSERT INTO messages (id, content, recipient_phone_number, sending_status, created_at, updated_at)"
                    " VALUES (%s, 'Hello', '+905551234567', 0, now(), now())",
                    (uuid.uuid4(),),
                )
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.005)
        observed.slowest[kind] = slowest


def _lock_monitor(url: str, done: threading.Event, observed: Observed) -> None:
    held_since: dict[str, float] = {}
    longest: dict[str, float] = defaultdict(float)
    with psycopg.connect(url, autocommit=True, application_name="adoption-bench-monitor") as conn:
        while not done.is_set():
            now = time.perf_counter()
            modes = {row[0] for row in conn.execute(LOCKS, (MIGRATOR,))}
            for mode in modes - held_since.keys():
                held_since[mode] = now
            for mode in list(held_since):
                if mode not in modes:
                    longest[mode] = max(longest[mode], now - held_since.pop(mode))
            time.sleep(0.002)
    observed.longest_hold = dict(longest)


def _without_step_breaks(directory: Path) -> Path:
    for path in migrations.migration_files():
        shutil.copy(path, directory / path.name)
        target = directory / path.name
        target.write_text(migrations.STEP_BREAK.sub("", target.read_text()))
    return directory


if __name__ == "__main__":
    main()
