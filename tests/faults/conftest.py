"""Fixtures for the fault tests: the settings of a fast drain, and stacks of real processes."""

from __future__ import annotations

import pytest

from harness.stack import Stack, environment
from tests.integration.conftest import celery_app, celery_worker  # noqa: F401  (the same real worker)


@pytest.fixture
def fault_env(database_url, redis_url, receiver):
    return dict(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WEBHOOK_URL=receiver.url,
        WEBHOOK_TIMEOUT_SECONDS=2,
        SEND_INTERVAL_SECONDS=0.2,
        SEND_BATCH_SIZE=250,
        CLAIM_TIMEOUT_SECONDS=5,
        RETRY_BASE_SECONDS=0.2,
        RETRY_MAX_SECONDS=1,
        AUTO_START="true",
    )


@pytest.fixture
def make_stack(tmp_path):
    stacks = []

    def make(**variables) -> Stack:
        stack = Stack(environment(**variables), tmp_path)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop(timeout=15)
        print(stack.logs())  # shown when the test failed
