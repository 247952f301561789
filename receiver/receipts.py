"""Delivery receipts the receiver sends back, as a provider does: signed with Standard Webhooks, after a
delay, with the outcome its behaviour says."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

from standardwebhooks import Webhook

log = logging.getLogger("receiver")

DEFAULT_RECEIPT_URL = "http://127.0.0.1:8080/messaging/receipts"
# What each outcome sends, in order: one final receipt, the same one twice, or two that disagree
# (the second must be recorded in the message's history and never applied).
OUTCOMES: dict[str, tuple[str, ...]] = {
    "delivered": ("delivered",),
    "undelivered": ("undelivered",),
    "failed": ("failed",),
    "duplicate": ("delivered", "delivered"),
    "out_of_order": ("delivered", "undelivered"),
    "none": (),
}
SEND_TIMEOUT_SECONDS = 5


class ReceiptSender:
    """Sends the receipts of one accepted delivery on a timer thread; a failed send is logged, never retried."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret.split()[0])
        self._sent: list[dict] = []
        self._lock = threading.Lock()

    def schedule(self, url: str, message_id: str, outcome: str, delay_ms: int) -> None:
        timer = threading.Timer(delay_ms / 1000, self._send_all, args=(url, message_id, OUTCOMES[outcome]))
        timer.daemon = True
        timer.start()

    def sent(self) -> list[dict]:
        with self._lock:
            return list(self._sent)

    def _send_all(self, url: str, message_id: str, statuses: tuple[str, ...]) -> None:
        for status in statuses:
            answer = self._send(url, {"messageId": message_id, "status": status, "timestamp": _now()})
            with self._lock:
                self._sent.append({"messageId": message_id, "status": status, "answer": answer})
            log.info("receiver: receipt messageId=%s status=%s answered=%s", message_id, status, answer)

    def _send(self, url: str, body: dict) -> int | None:
        raw, webhook_id, moment = json.dumps(body), f"msg_{uuid.uuid4().hex}", datetime.now(timezone.utc)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": self._webhook.sign(webhook_id, moment, raw),
        }
        return post(url, raw, headers)


def post(url: str, raw: str, headers: dict[str, str]) -> int | None:
    request = urllib.request.Request(url, data=raw.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_SECONDS) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
