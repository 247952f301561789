"""`python -m messaging migrate` as an operator runs it, against the Go service's table: what it says and how it fails."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import psycopg
import pytest

from harness.stack import ROOT, environment
from messaging.postgres import migrations
from tests.conftest import POSTGRES_URL
from tests.go_service import (
    FAILED,
    PENDING,
    SENT,
    T0,
    create_released_database,
    insert_go_row,
    rows_of,
    scratch_database,
)

pytestmark = pytest.mark.e2e


def run_migrate(url: str) -> subprocess.CompletedProcess:
    """`python -m messaging migrate` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "messaging", "migrate"],
        cwd=ROOT,
        env=environment(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_one_of_our_databases_keeps_its_rows_and_claims_through_the_adoption_migration():
    with scratch_database(POSTGRES_URL) as ours:
        create_released_database(ours)
        with psycopg.connect(ours, autocommit=True) as conn:
            claimed = conn.execute(
                "INSERT INTO messages (recipient_phone_number, content, sending_status, claimed_at, claim_token) "
                "VALUES ('+905551234567', 'hi', 3, now(), gen_random_uuid()) RETURNING id"
            ).fetchone()[0]
            seed_style_sent = insert_go_row(conn, status=SENT, created_at=T0, updated_at=T0 + timedelta(minutes=2))
        before = rows_of(ours)
        result = run_migrate(ours)
        after = rows_of(ours)
        kept = {column: after[claimed][column] for column in before[claimed]}  # later migrations add columns
        assert kept == before[claimed], "a claim in flight is left alone"
        assert after[seed_style_sent]["sent_at"] == T0 + timedelta(minutes=2)
        notices = [line for line in result.stderr.splitlines() if "migration_notice" in line]
        assert len(notices) == 1 and "sent messages without sent_at: 1;" in notices[0], "only what it did, no server chatter"


def test_rows_that_break_the_new_checks_do_not_stop_migrate_and_pending_ones_become_failed(go_database):
    with psycopg.connect(go_database, autocommit=True) as conn:
        good = insert_go_row(conn, status=PENDING, created_at=T0)
        bad_number = insert_go_row(conn, status=PENDING, created_at=T0, phone="05321234567")
        zero_first = insert_go_row(conn, status=PENDING, created_at=T0, phone="+0987654321")
        empty = insert_go_row(conn, status=PENDING, created_at=T0, content="")
        unknown = insert_go_row(conn, status=7, created_at=T0)
        sent_bad = insert_go_row(conn, status=SENT, created_at=T0, phone="+1 555 0100")
        failed_bad = insert_go_row(conn, status=FAILED, created_at=T0, content="")

    result = run_migrate(go_database)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert "pending messages that cannot be sent: 3 (recipient_phone_number not E.164: 2, content empty: 1)" in output
    assert "they are now failed, with last_error saying why" in output
    assert "messages with a sending_status the Go service did not define: 1" in output
    # The two numbers failed just now and the sent one; the failed message with empty content and the one failed now.
    assert "sent or failed messages that break messages_recipient_e164: 3; they are kept as they are" in output
    assert "sent or failed messages that break messages_content_length: 2;" in output
    rows = rows_of(go_database)
    assert rows[good]["sending_status"] == PENDING and rows[good]["last_error"] is None
    for message_id in (bad_number, zero_first):
        assert rows[message_id]["sending_status"] == FAILED
        assert "recipient_phone_number is not E.164" in rows[message_id]["last_error"]
    assert rows[empty]["sending_status"] == FAILED and "content is empty" in rows[empty]["last_error"]
    assert rows[unknown]["sending_status"] == FAILED and "sending_status 7" in rows[unknown]["last_error"]
    assert rows[sent_bad]["sending_status"] == SENT and rows[sent_bad]["last_error"] is None, "history kept as it was"
    assert rows[failed_bad]["sending_status"] == FAILED


def test_a_broken_table_fails_migrate_with_one_line_naming_the_file_and_the_cause(go_database):
    with psycopg.connect(go_database, autocommit=True) as conn:
        conn.execute("ALTER TABLE messages DROP COLUMN updated_at")
    result = run_migrate(go_database)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        'migrate failed: 0002_adopt_go_table.sql: column "updated_at" of relation "messages" does not exist'
    )


def test_missing_permissions_fail_migrate_with_one_line(go_database):
    role = f"adopt_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(go_database, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        result = run_migrate(go_database.replace("postgres@", f"{role}@"))
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1] == "migrate failed: permission denied for schema public"
    finally:
        with psycopg.connect(go_database, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")


def test_a_migrate_stuck_behind_a_long_transaction_gives_up_in_one_line_and_the_next_run_finishes(go_database):
    with psycopg.connect(go_database) as reader:
        reader.execute("SELECT count(*) FROM messages").fetchone()  # its transaction stays open: ACCESS SHARE held
        stuck = run_migrate(go_database)
        reader.rollback()
    assert stuck.returncode == 1 and "Traceback" not in stuck.stderr
    assert stuck.stderr.strip().splitlines()[-1] == (
        "migrate failed: 0002_adopt_go_table.sql: canceling statement due to lock timeout"
    )
    assert run_migrate(go_database).returncode == 0
    assert migrations.migrate(go_database) == []
