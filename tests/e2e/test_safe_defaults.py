"""Safe by default, seen from the real API process."""

from __future__ import annotations

import pytest

from harness.stack import BIN, Stack, environment, free_port, wait_until_up
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

OPEN_API_WARNING = "event=api_token_unset"


@pytest.mark.parametrize(("api_token", "warnings"), [("", 1), ("s3cret-token-of-32-characters-ok", 0)], ids=["unset", "set"])
def test_the_api_warns_once_at_start_while_api_token_is_empty(database_url, redis_url, tmp_path, api_token, warnings):
    stack = Stack(environment(DATABASE_URL=database_url, REDIS_URL=redis_url, API_TOKEN=api_token), tmp_path)
    port = free_port()
    process = stack.start(
        "api", str(BIN / "gunicorn"), "api:create_app()",
        extra_env={"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "3"},
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", process)
        wait_for(lambda: process.log().count("Booting worker") == 3, what="three workers")
    finally:
        # gunicorn exits once every worker has: each one's own start-up lines are in the log by then.
        assert stack.stop() == {"api": 0}

    lines = [line for line in process.log().splitlines() if OPEN_API_WARNING in line]
    assert len(lines) == warnings, process.log()
    assert all(" WARNING " in line and "API_TOKEN" in line for line in lines)



@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"API_AUTH": "token"}, "API_TOKEN"),
        ({"API_TOKEN": "short"}, "API_TOKEN"),
        ({"API_AUTH": "off", "API_TOKEN": "s3cret-token-of-32-characters-ok"}, "API_AUTH"),
        ({"ALLOWED_HOSTS": "http://sms.example.com"}, "ALLOWED_HOSTS"),
    ],
    ids=["token-required-but-unset", "token-too-short", "off-but-token-set", "allowed-hosts-not-a-host"],
)
def test_the_api_refuses_to_start_with_one_line_naming_the_variable(database_url, redis_url, tmp_path, variables, named):
    stack = Stack(environment(DATABASE_URL=database_url, REDIS_URL=redis_url, **variables), tmp_path)
    process = stack.start(
        "api", str(BIN / "gunicorn"), "api:create_app()", extra_env={"GUNICORN_BIND": f"127.0.0.1:{free_port()}"}
    )

    assert process.wait(timeout=30) == 2
    refusals = [line for line in process.log().splitlines() if "configuration error" in line]
    assert len(refusals) == 1 and refusals[0].startswith(f"configuration error: {named} "), process.log()
    assert "Traceback" not in process.log() and "Booting worker" not in process.log()
