"""`migrate` takes over the Go service's table in place, and every database ends at one schema."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest

from messaging.postgres import migrations
from messaging.runtime import Runtime
from tests.conftest import POSTGRES_URL
from tests.go_service import (
    FAILED,
    PENDING,
    SENT,
    T0,
    create_go_table,
    create_released_database,
    insert_go_row,
    rows_of,
    schema_of,
    scratch_database,
)

ALL_FILES = [path.name for path in migrations.migration_files()]


def test_migrate_adopts_the_go_table_keeping_every_row_id_time_and_status(go_database):
    with psycopg.connect(go_database, autocommit=True) as conn:
        pending = insert_go_row(conn, status=PENDING, created_at=T0)
        sent = insert_go_row(conn, status=SENT, created_at=T0 + timedelta(minutes=1), updated_at=T0 + timedelta(minutes=3))
        failed = insert_go_row(conn, status=FAILED, created_at=T0 + timedelta(minutes=2), updated_at=T0 + timedelta(minutes=4))
        file_before = conn.execute("SELECT pg_relation_filenode('messages')").fetchone()[0]
    before = rows_of(go_database)

    assert migrations.migrate(go_database) == ALL_FILES

    after = rows_of(go_database)
    assert after.keys() == before.keys() == {pending, sent, failed}
    for message_id, old in before.items():
        assert {key: after[message_id][key] for key in old} == old, "id, content, number, status and times kept"
    assert after[sent]["sent_at"] == before[sent]["updated_at"], "sent_at backfilled from updated_at"
    assert after[pending]["sent_at"] is None and after[failed]["sent_at"] is None
    assert all(row["attempts"] == 0 and row["next_attempt_at"] is not None for row in after.values())
    with psycopg.connect(go_database, autocommit=True) as conn:
        assert conn.execute("SELECT pg_relation_filenode('messages')").fetchone()[0] == file_before, "no table rewrite"
        new = conn.execute(
            "INSERT INTO messages (recipient_phone_number, content) VALUES ('+905551234567', %s) RETURNING *",
            ("x" * 160,),
        ).fetchone()
        assert new is not None, "defaults fill id, status and times; content holds 160 characters"


def test_a_fresh_database_one_of_ours_and_a_go_one_end_at_the_same_schema(database_url):
    with scratch_database(POSTGRES_URL) as fresh, scratch_database(POSTGRES_URL) as ours, scratch_database(
        POSTGRES_URL
    ) as go:
        create_released_database(ours)
        create_go_table(go)
        with psycopg.connect(go, autocommit=True) as conn:
            insert_go_row(conn, status=SENT, created_at=T0)
        assert migrations.migrate(fresh) == ALL_FILES
        assert migrations.migrate(ours) == ALL_FILES[1:]
        assert migrations.migrate(go) == ALL_FILES
        assert schema_of(go) == schema_of(fresh)
        assert schema_of(ours) == schema_of(fresh)
        assert schema_of(fresh) == schema_of(database_url), "the test database is migrated the same way"
        for url in (fresh, ours, go):
            assert migrations.migrate(url) == []


def test_after_adoption_the_checks_refuse_bad_new_rows_and_the_batch_claims_only_sendable_ones(go_database, settings):
    with psycopg.connect(go_database, autocommit=True) as conn:
        good = insert_go_row(conn, status=PENDING, created_at=T0 + timedelta(minutes=1))
        insert_go_row(conn, status=PENDING, created_at=T0, phone="not a number")
        insert_go_row(conn, status=SENT, created_at=T0, phone="not a number")
    migrations.migrate(go_database)

    with psycopg.connect(go_database, autocommit=True) as conn:
        for content, phone in (("hi", "12345"), ("", "+905551234567")):
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(
                    "INSERT INTO messages (id, content, recipient_phone_number, sending_status, created_at, updated_at) "
                    "VALUES (gen_random_uuid(), %s, %s, 0, now(), now())",
                    (content, phone),
                )
    runtime = Runtime.open(dataclasses.replace(settings, database_url=go_database), name="adopt")
    try:
        assert [claim.message_id for claim in runtime.records.claim_due(10)] == [good]
    finally:
        runtime.close()


def test_times_the_go_service_left_empty_are_filled_and_the_columns_become_not_null(go_database):
    with psycopg.connect(go_database, autocommit=True) as conn:
        no_created = insert_go_row(conn, status=PENDING, created_at=None, updated_at=T0)
        no_times = insert_go_row(conn, status=SENT, created_at=None, updated_at=None)
    migrations.migrate(go_database)
    rows = rows_of(go_database)
    assert rows[no_created]["created_at"] == T0
    assert rows[no_times]["created_at"] is not None and rows[no_times]["sent_at"] == rows[no_times]["updated_at"]
    columns = dict((name, nullable) for _, name, _, _, _, nullable in schema_of(go_database)["columns"])
    assert columns["created_at"] == columns["updated_at"] == "NO"


def test_two_migrates_at_once_adopt_a_go_table_once(go_database):
    with psycopg.connect(go_database, autocommit=True) as conn:
        for minute in range(50):
            insert_go_row(conn, status=minute % 3, created_at=T0 + timedelta(minutes=minute))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(migrations.migrate, [go_database, go_database]))
    assert sorted(results, key=len) == [[], ALL_FILES]
    assert len(rows_of(go_database)) == 50


def adoption_steps() -> list[str]:
    path = next(path for path in migrations.migration_files() if path.name == "0002_adopt_go_table.sql")
    return [step for step in migrations.STEP_BREAK.split(path.read_text()) if step.strip()]


@pytest.mark.parametrize("steps_done", range(1, len(adoption_steps())))
def test_a_migrate_cut_short_after_any_step_is_finished_by_the_next(go_database, steps_done):
    with psycopg.connect(go_database, autocommit=True) as conn:
        kept = insert_go_row(conn, status=SENT, created_at=T0)
        unsendable = insert_go_row(conn, status=PENDING, created_at=None, phone="12345")
        for step in adoption_steps()[:steps_done]:
            conn.execute(step)
    migrations.migrate(go_database)
    rows = rows_of(go_database)
    assert rows[kept]["sent_at"] == T0
    assert rows[unsendable]["sending_status"] == FAILED
    with scratch_database(POSTGRES_URL) as fresh:
        migrations.migrate(fresh)
        expected = schema_of(fresh)
    validated = {name: valid for name, _, valid in schema_of(go_database)["constraints"]}
    assert validated.pop("messages_recipient_e164") is False, "the failed message still holds its number"
    assert validated == {name: valid for name, _, valid in expected["constraints"] if name != "messages_recipient_e164"}
    assert {k: v for k, v in schema_of(go_database).items() if k != "constraints"} == {
        k: v for k, v in expected.items() if k != "constraints"
    }


def test_while_migrate_runs_no_new_message_gets_in_pending_with_a_number_it_cannot_be_sent_to(go_database):
    with psycopg.connect(go_database, autocommit=True) as conn:
        conn.execute(adoption_steps()[0])
        with pytest.raises(psycopg.errors.CheckViolation):
            insert_go_row(conn, status=PENDING, created_at=T0, phone="05321234567")
        with pytest.raises(psycopg.errors.CheckViolation):
            insert_go_row(conn, status=7, created_at=T0)
        insert_go_row(conn, status=PENDING, created_at=T0)


