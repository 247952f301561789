"""A beat scheduler that leaves a heartbeat file on every tick, for a container liveness check."""

from __future__ import annotations

import tempfile
from pathlib import Path

from celery import beat

HEARTBEAT_FILE = Path(tempfile.gettempdir()) / "messaging-beat-heartbeat"


class HeartbeatScheduler(beat.Scheduler):
    """In-memory schedule (an interval needs no state on disk) plus a heartbeat."""

    def tick(self, *args, **kwargs):
        HEARTBEAT_FILE.touch()
        return super().tick(*args, **kwargs)
