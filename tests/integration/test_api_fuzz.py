"""Property-based fuzz of the whole HTTP API from its own OpenAPI document (schemathesis).

Every call in /openapi.json gets valid and invalid requests (strange Unicode, NUL bytes,
huge numbers, wrong types, missing and extra fields), sent to the real app on the test
database and Redis. No answer may be a 5xx, and every answer must match the document:
status code, content type, body schema, headers, and valid data accepted, invalid rejected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from api import close_app, create_app, cursors
from api.paging import MAX_OFFSET
from messaging.domain.message import Status

TOKEN = "fuzz-token"
CURSOR_KEY = "fuzz-cursor-key"
MESSAGE_ID_PATHS = (
    "/messaging/messages/{message_id}",
    "/messaging/messages/{message_id}/retry",
    "/messaging/messages/{message_id}/cancel",
    "/messaging/messages/{message_id}/attempts",
)


@pytest.fixture
def fuzzed_app(settings) -> Iterator[Flask]:
    app = create_app(dataclasses.replace(settings, api_token=TOKEN, secret_key=CURSOR_KEY))
    yield app
    close_app(app)


@pytest.fixture
def seeded_ids(make_message) -> list[str]:
    """Messages in every status, for the drawn ids to hit now and then."""
    return [str(make_message(sending_status=status)) for status in Status for _ in range(2)]


@pytest.fixture
def api_schema(fuzzed_app) -> Iterator[schemathesis.BaseSchema]:
    # Given to schemathesis as the document's bearerAuth scheme, so that it knows which
    # requests carry the token and can also check that those without it are refused.
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"bearerAuth": {"bearer": TOKEN}}}})
    yield schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app, config=config)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy loader reads `node._nodeid`, which pytest 9 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_call_answers_a_server_error_or_breaks_its_document(case, seeded_ids):
    _aim_some_ids_at_real_messages(case, seeded_ids)
    _keep_offset_and_cursor_apart(case)
    _give_the_go_shape_its_limit(case)
    _sign_drawn_cursors(case)
    _keep_new_messages_within_the_domain_rules(case)
    case.call_and_validate()


def _aim_some_ids_at_real_messages(case, seeded_ids: list[str]) -> None:
    """Drawn UUIDs never exist; point half of the valid ones at stored messages (each status)."""
    if case.operation.path not in MESSAGE_ID_PATHS or not case.meta or not case.meta.generation.mode.is_positive:
        return
    drawn = str(case.path_parameters.get("message_id", ""))
    choice = sum(map(ord, drawn)) % (2 * len(seeded_ids))
    if choice < len(seeded_ids):
        case.path_parameters["message_id"] = seeded_ids[choice]


def _give_the_go_shape_its_limit(case) -> None:
    """`format=seed` makes `limit` required, as the Go service did; the document says it but cannot encode it."""
    query = case.query or {}
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and query.get("format") == "seed" and "limit" not in query:
        query["limit"] = 20


def _keep_offset_and_cursor_apart(case) -> None:
    """The document says it (400 for both at once) but cannot encode it: only valid requests send one."""
    query = case.query or {}
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and "cursor" in query and query.get("offset") not in (None, 0):
        del query["offset"]


def _sign_drawn_cursors(case) -> None:
    """A valid cursor carries the signature its list gave it, which no pattern can say: sign the drawn position
    (an offset one within the offset's cap, which the pattern cannot say either)."""
    query = case.query or {}
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    listing = case.operation.path.rsplit("/", 1)[1]
    if positive and listing in ("sent", "failed") and isinstance(query.get("cursor"), str):
        position = query["cursor"].rpartition(".")[0]
        if position.startswith("o"):
            position = f"o{min(int(position[1:]), MAX_OFFSET)}"
        query["cursor"] = cursors.sign(position, listing, CURSOR_KEY)


def _keep_new_messages_within_the_domain_rules(case) -> None:
    """The document gives send_at's format but cannot say "from now to 35 days ahead", nor content
    "not only whitespace": valid requests keep to both (the domain answers 422 otherwise, tested apart)."""
    body = case.body if isinstance(case.body, dict) else None
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if not positive or body is None or case.operation.path != "/messaging/messages":
        return
    if "send_at" in body:
        body["send_at"] = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    if isinstance(body.get("content"), str) and not body["content"].strip():
        body["content"] = "x" + body["content"][1:]
