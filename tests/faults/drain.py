"""A drain under faults: a backlog to send, and what must hold once it ends."""

from __future__ import annotations

import subprocess
import sys

from harness.stack import environment


def insert_backlog(db, count: int) -> None:
    db.execute(
        "INSERT INTO messages (content, recipient_phone_number, created_at) "
        "SELECT 'fault test ' || g, '+90532' || lpad(g::text, 7, '0'), now() - (%(n)s - g) * interval '1 ms' "
        "FROM generate_series(1, %(n)s) AS g",
        {"n": count},
    )


def sent_count(db) -> int:
    return db.execute("SELECT count(*) AS n FROM messages WHERE sending_status = 1").fetchone()["n"]


def assert_all_delivered(db, receiver, count: int, max_duplicates: int = 0) -> None:
    stats = receiver.stats()
    assert sent_count(db) == count, "every message is recorded as sent"
    assert stats["unique"] == count, "every message reached the receiver"
    assert stats["duplicates"] <= max_duplicates, stats
    assert db.execute("SELECT count(*) AS n FROM messages WHERE sending_status <> 1").fetchone()["n"] == 0


def assert_audit_clean(env: dict) -> None:
    """`python -m messaging audit` finds PostgreSQL, the delivery cache and the metrics in agreement."""
    command = [sys.executable, "-m", "messaging", "audit"]
    result = subprocess.run(command, env=environment(**env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
