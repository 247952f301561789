"""docs/cutover.md followed on a database made exactly as the Go service makes it, with the real processes.

The runbook's blocks marked `runbook:<name>` (backup, migrate, roll back) run as they are
written, in bash; the processes start as the runbook starts them (harness/stack.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import redis
import requests

from harness.stack import BIN, ROOT, Stack, environment, free_port
from tests.conftest import POSTGRES_URL
from tests.go_service import (
    FAILED,
    PENDING,
    SENT,
    create_go_table,
    insert_go_row,
    scratch_database,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
RUNBOOK = ROOT / "docs" / "cutover.md"
T0 = datetime(2024, 6, 1, 9, 0, tzinfo=timezone.utc)
INTERVAL = 0.5
GO_COLUMNS = ["id", "content", "recipient_phone_number", "sending_status", "created_at", "updated_at"]


def runbook_block(name: str) -> str:
    """The shell block that follows `<!-- runbook:<name> -->` in docs/cutover.md."""
    found = re.search(rf"<!-- runbook:{name} -->\n```sh\n(.*?)```", RUNBOOK.read_text(), re.DOTALL)
    assert found, f"docs/cutover.md has no runbook:{name} block"
    return found.group(1)


def run_block(name: str, env: dict[str, str], cwd) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", runbook_block(name)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"runbook:{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def check_audit(env: dict[str, str]) -> None:
    """Runbook step 5's audit: PostgreSQL, the Redis cache and the metrics agree."""
    audit = subprocess.run([str(BIN / "python"), "-m", "messaging", "audit"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, f"audit found a disagreement:\n{audit.stdout}\n{audit.stderr}"


@pytest.fixture
def go_database():
    with scratch_database(POSTGRES_URL) as url:
        create_go_table(url)
        yield url


def test_the_cutover_runbook_takes_over_a_go_database_and_rolls_back(
    go_database, redis_url, receiver, tmp_path, postgres_tools_path
):
    # The Go service's history: sent, failed, pending (inserted out of order), and rows it never checked.
    with psycopg.connect(go_database, autocommit=True) as conn:
        old_sent = [
            insert_go_row(conn, status=SENT, created_at=T0 + timedelta(minutes=m), updated_at=T0 + timedelta(minutes=m, seconds=30))
            for m in range(3)
        ]
        conn.execute("UPDATE messages SET recipient_phone_number = '05321234567' WHERE id = %s", (old_sent[0],))
        old_failed = insert_go_row(conn, status=FAILED, created_at=T0, updated_at=T0 + timedelta(minutes=1))
        minutes = [40, 10, 30, 0, 50, 20]
        pending = {m: insert_go_row(conn, status=PENDING, created_at=T0 + timedelta(days=1, minutes=m)) for m in minutes}
        unsendable = [
            insert_go_row(conn, status=PENDING, created_at=T0, phone="+0987654321"),
            insert_go_row(conn, status=PENDING, created_at=T0, content=""),
        ]
        before = conn.execute("SELECT * FROM messages ORDER BY id").fetchall()
    oldest_first = [str(pending[m]) for m in sorted(minutes)]
    # A delivery the Go service cached, under its own key: the bare message id.
    go_cache = redis.Redis.from_url(redis_url, decode_responses=True)
    go_entry = json.dumps({"sendingTime": "2024-06-01T09:00:30Z", "messageId": "7d0c2b3e-0f7e-4c55-9f6a-2a3c1b9d8e11"})
    go_cache.set(str(old_sent[1]), go_entry, ex=3600)

    port = free_port()
    api = f"http://127.0.0.1:{port}"
    backup = tmp_path / "messages-before-cutover.dump"
    env = environment(
        DATABASE_URL=go_database,
        REDIS_URL=redis_url,
        WEBHOOK_URL=receiver.url,
        SENT_RESPONSE_FORMAT="seed",
        AUTO_START="true",
        SEND_INTERVAL_SECONDS=INTERVAL,
        BACKUP=backup,
        API=api,
        PATH=f"{BIN}{os.pathsep}{postgres_tools_path}",
        PYTHONPATH=ROOT,
    )
    stack = Stack(env, tmp_path)
    try:
        # 1. Stop the Go service's scheduler: there is no Go process here. 2. Back up. 3. Migrate.
        counts_before = run_block("backup", env, tmp_path)
        assert backup.stat().st_size > 0 and "3 rows" in counts_before
        migrated = run_block("migrate", env, tmp_path)
        assert "pending messages that cannot be sent: 2" in migrated

        # 4. Start the API, a worker and beat with AUTO_START: sending starts without a call.
        stack.api(port)
        stack.worker("worker1")
        stack.beat()

        # The oldest pending messages go first, two per interval.
        wait_for(lambda: len(receiver.deliveries()) == 6, timeout=60, what="the six sendable pending messages")
        keys = [delivery["key"] for delivery in receiver.deliveries()]
        assert receiver.count_by_key() == {key: 1 for key in oldest_first}
        for position in range(0, 6, 2):
            assert set(keys[position : position + 2]) == set(oldest_first[position : position + 2])

        # 5. Check: the status counts everything, the audit agrees, the Go clients get their list.
        counts = {"pending": 0, "sending": 0, "sent": 9, "failed": 3, "canceled": 0}
        wait_for(lambda: requests.get(f"{api}/messaging/status", timeout=5).json()["counts"] == counts, what="counts")
        assert requests.get(f"{api}/messaging/status", timeout=5).json()["enabled"] is True
        check_audit(env)
        seed_list = requests.get(f"{api}/messaging/sent", params={"limit": 100, "offset": 0}, timeout=5).json()
        listed = {item["ID"]: item for item in seed_list}
        assert {str(message_id) for message_id in old_sent} <= listed.keys() and len(listed) == 9
        assert listed[str(old_sent[2])]["UpdatedAt"] == "2024-06-01T09:02:30Z"
        assert {item["SendingStatus"] for item in seed_list} == {1}
        walked, cursors = _walk_by_cursor(api)
        assert walked == [item["ID"] for item in seed_list], "every sent message once, newest sent first"
        assert all(not cursor.startswith("o") for cursor in cursors), "old rows page by sent_at, not by offset"
        failed = requests.get(f"{api}/messaging/failed", params={"limit": 100}, timeout=5).json()["data"]
        assert {item["id"] for item in failed} == {str(old_failed), *map(str, unsendable)}

        # The Go service's cache entry survived, untouched.
        assert go_cache.get(str(old_sent[1])) == go_entry and 0 < go_cache.ttl(str(old_sent[1])) <= 3600

        # 6. Roll back: stop sending, stop the processes, keep what was done, restore, carry it over.
        assert requests.post(f"{api}/messaging/stop", timeout=5).json()["enabled"] is False
        wait_for(lambda: requests.get(f"{api}/messaging/status", timeout=5).json()["counts"]["sending"] == 0)
        assert stack.stop() == {"api": 0, "worker1": 0, "beat": 0}, stack.logs()
        run_block("rollback-keep", env, tmp_path)
        run_block("rollback-restore", env, tmp_path)
    finally:
        stack.stop()
        print(stack.logs())
        go_cache.close()

    with psycopg.connect(go_database) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'messages' ORDER BY ordinal_position"
        ).fetchall()
        after = {row[0]: row for row in conn.execute("SELECT * FROM messages")}
    assert [name for (name,) in columns] == GO_COLUMNS, "the Go service's table, as it was"
    for row in before:
        expected_status = SENT if row[0] in pending.values() else row[3]
        assert after[row[0]][:3] == row[:3] and after[row[0]][3] == expected_status, "sent since: sent for the Go service too"
    assert len(after) == len(before)


def _walk_by_cursor(api: str) -> tuple[list[str], list[str]]:
    """Every id of GET /messaging/sent in the standard shape, following next_cursor; and the cursors."""
    ids, cursors, params = [], [], {"format": "standard", "limit": 2}
    while True:
        page = requests.get(f"{api}/messaging/sent", params=params, timeout=5).json()
        ids += [item["id"] for item in page["data"]]
        cursor = page["pagination"]["next_cursor"]
        if cursor is None:
            return ids, cursors
        cursors.append(cursor)
        params = {"format": "standard", "limit": 2, "cursor": cursor}
