"""The worker's log: one line per delivery (`event=delivery`, ours), not three."""

from __future__ import annotations

import logging

from celery import signals

# Celery's "Task ... received" and "Task ... succeeded in" lines, one each per task.
ROUTINE_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


@signals.after_setup_logger.connect
def quiet_routine_task_lines(loglevel: int | str | None = None, **_: object) -> None:
    """Keep Celery's per-task lines for LOG_LEVEL=DEBUG only; their warnings and errors stay.

    `event=delivery` already names the message, its outcome and the POST's time. The two
    lines more per message would cost a worker CPU (bench/PROFILE.md) and make up most of the
    log's volume at hundreds of messages a second.
    """
    level = logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel
    if isinstance(level, int) and level <= logging.DEBUG:
        return
    for name in ROUTINE_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
