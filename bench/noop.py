"""Celery alone (`make bench`'s ceiling): the service's worker settings, a task that takes one id and does nothing.

`celery -A bench.noop worker` runs it with the same pool, threads, acks, prefetch and broker
transport as `celery -A worker worker`; only the task's body is gone.
"""

from __future__ import annotations

from celery import Celery

from messaging.settings import Settings
from worker import lazy_app
from worker.factory import create_celery_app

NOOP_TASK = "bench.noop"

def create_noop_app(settings: Settings) -> Celery:
    app = create_celery_app(settings)
    app.conf.include = []  # not worker.tasks: no database, no webhook client, no send task
    app.conf.beat_schedule = {}
    app.task(name=NOOP_TASK, ignore_result=True)(noop)
    return app


def noop(message_id: str) -> None:
    """Nothing: what one task per message costs before any of its work."""


# The app, built on first access as `worker.app` is: importing this module reads nothing.
__getattr__ = lazy_app(create_noop_app)
