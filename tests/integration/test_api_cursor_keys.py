"""Page cursors are signed with SECRET_KEY, or with one key every API process shares through PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from messaging.domain.message import Status
from tests.integration.api_support import CLOSED_PORT_POSTGRES, T0, cursor_key, error_of

KEY_A = "the secret key of deployment A"
KEY_B = "the secret key of deployment B"


def next_cursor(client) -> str:
    cursor = client.get("/messaging/sent?limit=1").get_json()["pagination"]["next_cursor"]
    assert cursor
    return cursor


def make_sent(make_message, count: int = 3) -> None:
    for minute in range(count):
        make_message(sending_status=Status.SENT, sent_at=T0 + timedelta(minutes=minute))


def test_a_cursor_signed_under_one_key_answers_400_under_another(make_app, make_message):
    make_sent(make_message)
    deployment_a = make_app(secret_key=KEY_A).test_client()
    deployment_b = make_app(secret_key=KEY_B).test_client()
    cursor = next_cursor(deployment_a)

    assert deployment_a.get(f"/messaging/sent?limit=1&cursor={cursor}").status_code == 200
    response = deployment_b.get(f"/messaging/sent?limit=1&cursor={cursor}")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["cursor"]


def test_api_processes_without_secret_key_share_one_key_kept_in_postgresql(make_app, make_message, db):
    make_sent(make_message)
    first = make_app(secret_key="").test_client()
    second = make_app(secret_key="").test_client()  # another process: nothing shared but the database

    from_first, from_second = next_cursor(first), next_cursor(second)

    assert second.get(f"/messaging/sent?limit=1&cursor={from_first}").status_code == 200
    assert first.get(f"/messaging/sent?limit=1&cursor={from_second}").status_code == 200
    kept = db.execute("SELECT value FROM service_keys").fetchall()
    assert [row["value"] for row in kept] == [cursor_key(first)] == [cursor_key(second)]
    assert len(cursor_key(first)) >= 32
    # Not a constant of the code: a deployment with a key of its own refuses these cursors.
    assert make_app(secret_key=KEY_A).test_client().get(f"/messaging/sent?cursor={from_first}").status_code == 400


def test_without_postgresql_a_cursor_answers_503_and_the_app_still_starts(make_app):
    client = make_app(secret_key="", database_url=CLOSED_PORT_POSTGRES).test_client()

    response = client.get("/messaging/sent?cursor=o1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")

    assert response.status_code == 503
    assert error_of(response)["code"] == "unavailable"
