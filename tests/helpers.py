"""Small waiting (and skipping) helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll until `check()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def skip_unless_embedded_postgres_can_run_here() -> None:
    """Under root in a checkout `nobody` may not enter (a `mktemp -d` clone), the embedded PostgreSQL refuses
    by design with one line saying what to do (localrun/postgres_server.py): skip with that line."""
    from localrun import postgres_server
    from localrun.embedded import ServerError

    try:
        postgres_server.unprivileged_user()
    except ServerError as refusal:
        pytest.skip(str(refusal))
