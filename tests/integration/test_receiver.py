"""Tests for the local webhook receiver that stands in for the SMS provider."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from receiver import Receiver

TIMEOUT = 5


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def deliver(url: str, key: str | None = None, session: requests.Session | None = None,
            **payload: object) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    body = payload or {"to": "+4915112345678", "body": "hello"}
    return (session or requests).post(url, json=body, headers=headers, timeout=TIMEOUT)


def test_delivery_is_accepted_with_message_id(receiver: Receiver) -> None:
    resp = requests.post(receiver.url, json={"to": "+491", "body": "hi"},
                         headers={"Idempotency-Key": "k1", "X-Ins-Auth-Key": "secret"}, timeout=TIMEOUT)
    assert resp.status_code == 202
    assert resp.json()["message"] == "Accepted"
    uuid.UUID(resp.json()["messageId"])
    [d] = receiver.deliveries()
    assert d["key"] == "k1"
    assert d["json"] == {"to": "+491", "body": "hi"}
    assert d["headers"]["x-ins-auth-key"] == "secret"
    assert d["raw"] == resp.request.body
    assert d["status"] == 202


def test_stats_count_duplicates_by_idempotency_key(receiver: Receiver) -> None:
    for key in ("a", "a", "b", "a"):
        deliver(receiver.url, key)
    expected = {"received": 4, "unique": 2, "duplicates": 2, "accepted": 4}
    stats = requests.get(f"{receiver.base_url}/_receiver/stats", timeout=TIMEOUT).json()
    assert {k: stats[k] for k in expected} == expected
    assert receiver.count_by_key() == {"a": 3, "b": 1}


def test_deliveries_endpoint_and_reset(receiver: Receiver) -> None:
    deliver(receiver.url, "k", to="+1")
    [d] = requests.get(f"{receiver.base_url}/_receiver/deliveries", timeout=TIMEOUT).json()
    assert (d["key"], d["json"], d["headers"]["idempotency-key"]) == ("k", {"to": "+1"}, "k")
    assert d["received_at"] <= time.time()
    receiver.set_behaviour(status=500)
    assert requests.post(f"{receiver.base_url}/_receiver/reset", timeout=TIMEOUT).status_code == 200
    assert receiver.deliveries() == []
    assert deliver(receiver.url, "k").status_code == 202


def test_delay(receiver: Receiver) -> None:
    receiver.set_behaviour(delay_ms=300)
    started = time.monotonic()
    assert deliver(receiver.url, "k").status_code == 202
    assert time.monotonic() - started >= 0.3


def test_status_override_with_retry_after(receiver: Receiver) -> None:
    resp = requests.post(f"{receiver.base_url}/_receiver/behaviour",
                         json={"status": 429, "retry_after": 7}, timeout=TIMEOUT)
    assert resp.status_code == 200 and resp.json()["status"] == 429
    resp = deliver(receiver.url, "k")
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "7"
    assert receiver.stats()["accepted"] == 0


def test_the_first_answers_429_with_retry_after_then_an_acceptance_without_it(receiver: Receiver) -> None:
    receiver.set_behaviour(fail_first=1, fail_status=429, retry_after=30)
    refused, accepted = deliver(receiver.url, "k"), deliver(receiver.url, "k")
    assert (refused.status_code, refused.headers.get("Retry-After")) == (429, "30")
    assert (accepted.status_code, accepted.headers.get("Retry-After")) == (202, None)


def test_fail_first_then_success(receiver: Receiver) -> None:
    receiver.set_behaviour(fail_first=2, fail_status=503)
    assert [deliver(receiver.url, "k").status_code for _ in range(3)] == [503, 503, 202]
    assert deliver(receiver.url, "other").status_code == 503
    assert receiver.stats()["accepted"] == 1


def test_text_body_mode(receiver: Receiver) -> None:
    receiver.set_behaviour(body="text", status=200)
    resp = deliver(receiver.url, "k")
    assert (resp.status_code, resp.text) == (200, "ok")
    with pytest.raises(ValueError):
        resp.json()


def test_close_mode_drops_connection(receiver: Receiver) -> None:
    receiver.set_behaviour(body="close")
    with pytest.raises(requests.ConnectionError):
        deliver(receiver.url, "k")
    stats = receiver.stats()
    assert (stats["received"], stats["accepted"]) == (1, 0)
    assert receiver.deliveries()[0]["status"] is None


@pytest.mark.parametrize("payload", [
    b"not json", b"[1]", b'{"nope": 1}', b'{"delay_ms": -1}', b'{"status": 99}',
    b'{"status": true}', b'{"body": "xml"}', b'{"retry_after": "a\\r\\nX: y"}', b'{"fail_first": "2"}',
])
def test_bad_behaviour_is_rejected(receiver: Receiver, payload: bytes) -> None:
    resp = requests.post(f"{receiver.base_url}/_receiver/behaviour", data=payload, timeout=TIMEOUT)
    assert resp.status_code == 400
    assert resp.json()["message"]
    assert deliver(receiver.url, "k").status_code == 202


def test_keep_alive_reuses_one_connection(receiver: Receiver) -> None:
    with requests.Session() as session:
        assert deliver(receiver.url, "a", session).status_code == 202
        assert deliver(receiver.url, "b", session).status_code == 202
    assert receiver.stats()["connections"] == 1


def test_stop_cuts_keep_alive_connections() -> None:
    with requests.Session() as session:
        r = Receiver().start()
        deliver(r.url, "a", session)
        r.stop()
        with pytest.raises(requests.ConnectionError):
            deliver(r.url, "b", session)


