"""Celery entry point: `celery -A worker worker` and `celery -A worker beat`.

The app is built on first access to `worker.app`, from the environment, so importing
the tasks (in tests, say) neither reads settings nor creates a broker client.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from celery import Celery

from messaging.errors import SettingsError
from messaging.settings import Settings
from worker.factory import create_celery_app

_app: Celery | None = None


def __getattr__(name: str) -> Celery:
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = app_from_env(create_celery_app)
    return _app


def app_from_env(create: Callable[[Settings], Celery]) -> Celery:
    """`create(settings)` with the settings of the environment; a bad one ends the process, naming it."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        sys.exit(f"configuration error: {error}")
    return create(settings)


__all__ = ["app", "app_from_env", "create_celery_app"]
