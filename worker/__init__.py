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


def lazy_app(create: Callable[[Settings], Celery]) -> Callable[[str], Celery]:
    """A module `__getattr__` that builds the module's `app` with `create` on first access, from the
    environment's settings: importing the module reads nothing and connects to nothing."""
    built: list[Celery] = []

    def __getattr__(name: str) -> Celery:
        if name != "app":
            raise AttributeError(name)
        if not built:
            built.append(app_from_env(create))
        return built[0]

    return __getattr__


def app_from_env(create: Callable[[Settings], Celery]) -> Celery:
    """`create(settings)` with the settings of the environment; a bad one ends the process, naming it."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        sys.exit(f"configuration error: {error}")
    return create(settings)


__getattr__ = lazy_app(create_celery_app)

__all__ = ["app", "app_from_env", "create_celery_app", "lazy_app"]
