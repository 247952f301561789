"""Liveness checks for containers: `python -m worker.health beat`."""

from __future__ import annotations

import sys
import time

from worker.beat import HEARTBEAT_FILE

# beat_max_loop_interval is 5 s: a beat silent for this long is stuck or gone.
BEAT_STALE_AFTER_SECONDS = 60


def beat_is_alive() -> bool:
    try:
        age = time.time() - HEARTBEAT_FILE.stat().st_mtime
    except FileNotFoundError:
        return False
    return age < BEAT_STALE_AFTER_SECONDS


def main(argv: list[str]) -> int:
    if argv != ["beat"]:
        print("usage: python -m worker.health beat", file=sys.stderr)
        return 2
    if beat_is_alive():
        return 0
    print(f"beat heartbeat {HEARTBEAT_FILE} missing or older than {BEAT_STALE_AFTER_SECONDS}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
