"""Status callbacks taken by the demo receiver (POST /callbacks): each logged in one line and kept,
its Standard Webhooks signature checked when it has the secret."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

log = logging.getLogger("receiver")

PATH = "/callbacks"


class CallbackLog:
    """What came to /callbacks: webhook-id, type, the message's id and status, whether the signature verified."""

    def __init__(self, secret: str = "") -> None:
        self._verifier = Webhook(secret) if secret.strip() else None
        self._taken: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def take(self, raw: bytes, headers: dict[str, str]) -> int:
        """Keep and log one callback; the status to answer (401 when a secret is set and it does not verify)."""
        verified = None
        if self._verifier is not None:
            try:
                self._verifier.verify(raw, headers)
                verified = True
            except (WebhookVerificationError, ValueError):
                verified = False
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        data = body.get("data") if isinstance(body, dict) else None
        entry = {
            "webhook_id": headers.get("webhook-id"),
            "type": body.get("type") if isinstance(body, dict) else None,
            "message_id": data.get("id") if isinstance(data, dict) else None,
            "status": data.get("status") if isinstance(data, dict) else None,
            "delivery_status": data.get("delivery_status") if isinstance(data, dict) else None,
            "verified": verified,
        }
        with self._lock:
            self._taken.append(entry)
        log.info("callback %s", " ".join(f"{key}={value!r}" for key, value in entry.items()))
        return 401 if verified is False else 204

    def taken(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._taken)
