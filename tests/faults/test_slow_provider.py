"""A provider that trickles its answer: each POST is cut at the webhook timeout of wall
clock, so no claim expires under an open POST and no message is ever POSTed twice at once."""

from __future__ import annotations

import pytest

from tests.faults.drain import assert_all_delivered, insert_backlog, sent_count
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e


def test_a_trickling_provider_never_has_two_posts_of_one_message_open_at_once(fault_env, make_stack, db, receiver):
    # One byte every 200 ms: every read is well inside the 1 s timeout, the whole answer takes 14 s,
    # far beyond the 2 s claim timeout.
    receiver.set_behaviour(trickle_ms=200)
    insert_backlog(db, 20)
    # Every POST times out: the circuit breaker would rightly open; repeated attempts are the point here.
    stack = make_stack(
        **{**fault_env, "WEBHOOK_TIMEOUT_SECONDS": 1, "CLAIM_TIMEOUT_SECONDS": 2, "MAX_ATTEMPTS": 100, "BREAKER_MIN_CALLS": 1000}
    )
    stack.worker("w1")
    stack.worker("w2")
    stack.beat()
    wait_for(lambda: receiver.stats()["received"] >= 60, timeout=60, what="every message to be tried three times")
    assert sent_count(db) == 0, "a cut answer is a failed attempt, not a delivery"
    receiver.set_behaviour(trickle_ms=0)
    wait_for(lambda: sent_count(db) == 20, timeout=60, interval=0.2, what="every message to get through")
    assert receiver.stats()["overlaps"] == 0, "no two POSTs of one Idempotency-Key were ever open at the same moment"
    assert_all_delivered(db, receiver, 20, max_duplicates=receiver.stats()["received"])
    errors = {r["last_error"] for r in db.execute("SELECT last_error FROM messages")}
    assert errors == {None}
    timeouts = [line for line in stack.processes[0].log().splitlines() if "Timeout: no complete answer within 1s" in line]
    assert timeouts, "the cut attempts are recorded as timeouts"
