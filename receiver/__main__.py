"""Run the webhook receiver in the foreground: `python -m receiver --port 9000`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from receiver.inprocess import Receiver
from receiver.receipts import DEFAULT_RECEIPT_URL


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m receiver", description=__doc__)
    # argparse runs string defaults through `type`, so bad env values fail like bad flags.
    parser.add_argument("--host", default=env("RECEIVER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=env("RECEIVER_PORT", "9000"))
    parser.add_argument("--delay-ms", type=int, default=env("RECEIVER_DELAY_MS", "0"))
    parser.add_argument("--status", type=int, default=202)
    # The service's own LOG_LEVEL: WARNING leaves out the line per delivery and per callback (the benchmark's choice).
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default=env("LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--signing-secret",
        default=env("RECEIVER_SIGNING_SECRET", ""),
        help="whsec_... (several separated by spaces): refuse POSTs without a valid Standard Webhooks signature (401)",
    )
    parser.add_argument(
        "--receipt-secret",
        default=env("RECEIPT_SIGNING_SECRET", ""),
        help="whsec_...: send a signed delivery receipt back for each accepted delivery (POST /_receiver/behaviour "
        "sets receipt_outcome, receipt_delay_ms, receipt_url)",
    )
    parser.add_argument("--receipt-url", default=env("RECEIVER_RECEIPT_URL", DEFAULT_RECEIPT_URL))
    parser.add_argument(
        "--callback-secret",
        default=env("STATUS_CALLBACK_SIGNING_SECRET", ""),
        help="whsec_...: status callbacks POSTed to /callbacks must verify with it (else 401); each is logged",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        receiver = Receiver(
            args.host,
            args.port,
            signing_secret=args.signing_secret,
            receipt_secret=args.receipt_secret,
            callback_secret=args.callback_secret,
            delay_ms=args.delay_ms,
            status=args.status,
            receipt_url=args.receipt_url,
        )
    except ValueError as exc:
        raise SystemExit(f"receiver: {exc}") from None
    with receiver:
        print(f"receiver: listening on http://{receiver.host}:{receiver.port}/", flush=True)
        # Short waits keep the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    logging.getLogger("receiver").info("receiver: stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
