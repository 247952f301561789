"""A beat scheduler that leaves a heartbeat file on every tick, for a container liveness check."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from celery import beat

HEARTBEAT_ENV = "BEAT_HEARTBEAT_FILE"


def heartbeat_file() -> Path:
    """Where beat leaves its heartbeat: `$BEAT_HEARTBEAT_FILE`, else a file in the temp directory.

    Read by both sides of the check (this scheduler and `python -m worker.health beat`),
    each at its own process start.
    """
    configured = os.environ.get(HEARTBEAT_ENV, "").strip()
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "messaging-beat-heartbeat"


class HeartbeatScheduler(beat.Scheduler):
    """In-memory schedule (an interval needs no state on disk) plus a heartbeat.

    Beat calls `tick` at least every `beat_max_loop_interval` seconds, so the file's
    age tells whether the scheduler loop still runs.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.heartbeat = heartbeat_file()
        self.heartbeat.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs):
        self.heartbeat.touch()
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        # A beat that stopped cleanly is not alive: its last heartbeat must not say otherwise.
        super().close()
        self.heartbeat.unlink(missing_ok=True)
