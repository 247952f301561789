"""Celery's per-task lines: off at INFO (ours say it all), kept at DEBUG."""

from __future__ import annotations

import logging

import pytest

from worker.logs import ROUTINE_TASK_LOGGERS, quiet_routine_task_lines


@pytest.fixture(autouse=True)
def restore_levels():
    saved = {name: logging.getLogger(name).level for name in ROUTINE_TASK_LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("loglevel", [logging.INFO, "INFO", logging.WARNING])
def test_routine_task_lines_are_off_above_debug(loglevel):
    quiet_routine_task_lines(loglevel=loglevel)
    for name in ROUTINE_TASK_LOGGERS:
        logger = logging.getLogger(name)
        assert not logger.isEnabledFor(logging.INFO)
        assert logger.isEnabledFor(logging.WARNING), "their warnings and errors stay"


@pytest.mark.parametrize("loglevel", [logging.DEBUG, "DEBUG"])
def test_debug_keeps_them(loglevel):
    for name in ROUTINE_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    quiet_routine_task_lines(loglevel=loglevel)
    assert all(logging.getLogger(name).level == logging.NOTSET for name in ROUTINE_TASK_LOGGERS)
