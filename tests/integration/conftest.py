"""A real Celery worker, in this process, on the project's own configured app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from messaging.settings import Settings
from worker import tasks
from worker.factory import create_celery_app


@pytest.fixture
def celery_app(settings: Settings) -> Celery:
    app = create_celery_app(settings)
    app.set_current()
    return app


@pytest.fixture
def celery_worker(celery_app: Celery) -> Iterator[object]:
    """The configured app's worker on the threads pool; `task_always_eager` is not a test of Celery."""
    with start_worker(celery_app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=15) as worker:
        yield worker
    tasks._close_runtime()
