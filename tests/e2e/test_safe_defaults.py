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

