"""Liveness check for the beat container: `python -m worker.health beat` exits 0 while beat ticks.

Workers need no code of ours: `celery -A worker inspect ping --destination celery@$HOSTNAME`
asks the worker itself over the broker.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from worker.beat import HEARTBEAT_ENV, heartbeat_file

# beat_max_loop_interval is 5 s: a beat silent for this long is stuck or gone.
BEAT_STALE_AFTER_SECONDS = 60.0

OK, DOWN = 0, 1


def beat_is_alive(heartbeat: Path, stale_after: float = BEAT_STALE_AFTER_SECONDS) -> bool:
    """True when the heartbeat file was touched within `stale_after` seconds."""
    try:
        age = time.time() - heartbeat.stat().st_mtime
    except FileNotFoundError:
        return False
    return age < stale_after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.health", description="Liveness of the beat process.")
    parser.add_argument("process", choices=["beat"])
    parser.add_argument("--heartbeat-file", type=Path, default=None, help=f"default: ${HEARTBEAT_ENV} or the temp directory")
    parser.add_argument("--stale-after", type=float, default=BEAT_STALE_AFTER_SECONDS, metavar="SECONDS")
    args = parser.parse_args(argv)  # a usage error exits with 2
    heartbeat = args.heartbeat_file or heartbeat_file()
    if beat_is_alive(heartbeat, args.stale_after):
        return OK
    print(f"beat is not alive: heartbeat {heartbeat} missing or older than {args.stale_after:g}s", file=sys.stderr)
    return DOWN


if __name__ == "__main__":
    sys.exit(main())
