"""Command line: `python -m messaging migrate`, `load-demo`, `audit` and `prune`."""

from __future__ import annotations

import argparse
import logging
import sys

from messaging import logs
from messaging.ops import audit, pruning
from messaging.postgres import migrations
from messaging.errors import MessagingError, SettingsError
from messaging.settings import Settings

log = logging.getLogger("messaging")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m messaging")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the migrations in sql/ (idempotent, safe concurrently)")
    commands.add_parser("load-demo", help="insert the demo messages of sql/demo_data.sql (once)")
    commands.add_parser("audit", help="check that PostgreSQL, the Redis cache and the metrics agree (exit 1 if not)")
    commands.add_parser("prune", help="delete what is past MESSAGE_RETENTION_DAYS and ATTEMPT_RETENTION_DAYS, now")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    if args.command == "audit":
        return audit.main(settings)
    if args.command == "prune":
        return pruning.main(settings)
    try:
        if args.command == "migrate":
            applied = migrations.migrate(settings.database_url)
            log.info("event=migrate %s", logs.fields(applied=len(applied), versions=",".join(applied) or "none"))
        else:
            added = migrations.load_demo_data(settings.database_url)
            log.info("event=demo_data_loaded %s", logs.fields(added=added))
    except MessagingError as error:
        print(f"{args.command} failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
