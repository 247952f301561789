"""What the receiver remembers and how it answers: its behaviour (set through its control API), every
delivery it received, and the check of a signed one."""

from __future__ import annotations

import threading
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from receiver.receipts import DEFAULT_RECEIPT_URL, OUTCOMES

BODY_MODES = ("json", "text", "close")
DEFAULT_BEHAVIOUR: dict[str, Any] = {
    "delay_ms": 0, "status": 202, "retry_after": None,
    "body": "json", "fail_first": 0, "fail_status": 500,
    "trickle_ms": 0,  # > 0: the answer's body goes out one byte per trickle_ms (a provider that trickles)
    # Delivery receipts, sent for each accepted delivery when the receiver has a receipt secret.
    "receipt_outcome": "delivered", "receipt_delay_ms": 1000, "receipt_url": DEFAULT_RECEIPT_URL,
}


def _int_in(name: str, value: Any, low: int, high: int) -> int:
    # bool is an int subclass; `true` as a status is a caller bug, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]")
    return value


def validate_behaviour(changes: Any) -> dict[str, Any]:
    """Check a partial behaviour update; raise ValueError naming the bad field."""
    if not isinstance(changes, dict):
        raise ValueError("behaviour must be a JSON object")
    unknown = set(changes) - set(DEFAULT_BEHAVIOUR)
    if unknown:
        raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
    out = dict(changes)
    for name, low, high in (("delay_ms", 0, 600_000), ("status", 200, 599),
                            ("fail_first", 0, 1_000_000), ("fail_status", 200, 599), ("trickle_ms", 0, 60_000),
                            ("receipt_delay_ms", 0, 600_000)):
        if name in out:
            out[name] = _int_in(name, out[name], low, high)
    if out.get("body", "json") not in BODY_MODES:
        raise ValueError(f"body must be one of {list(BODY_MODES)}")
    if "receipt_outcome" in out and out["receipt_outcome"] not in OUTCOMES:
        raise ValueError(f"receipt_outcome must be one of {list(OUTCOMES)}")
    if "receipt_url" in out and not (isinstance(out["receipt_url"], str) and out["receipt_url"].startswith("http")):
        raise ValueError("receipt_url must be an http(s) URL")
    retry_after = out.get("retry_after")
    if retry_after is not None:
        if isinstance(retry_after, int) and not isinstance(retry_after, bool) and retry_after >= 0:
            out["retry_after"] = str(retry_after)
        elif not (isinstance(retry_after, str) and retry_after.strip()
                  and "\r" not in retry_after and "\n" not in retry_after):
            raise ValueError("retry_after must be null, a non-negative integer or a header string")
    return out


class Store:
    """Thread-safe record of deliveries plus the current behaviour."""

    def __init__(self, behaviour: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._initial = {**DEFAULT_BEHAVIOUR, **validate_behaviour(behaviour)}
        self.reset()

    def reset(self) -> None:
        # Back to the behaviour the receiver was started with, so a CLI --delay-ms survives resets.
        with self._lock:
            self._behaviour = dict(self._initial)
            self._deliveries: list[dict[str, Any]] = []
            self._counts: dict[str | None, int] = {}
            self._accepted = 0
            self._connections = 0
            self._open: dict[str | None, int] = {}
            self._overlaps = 0

    def set_behaviour(self, changes: Any) -> dict[str, Any]:
        valid = validate_behaviour(changes)
        with self._lock:
            self._behaviour.update(valid)
            return dict(self._behaviour)

    def connection_opened(self) -> None:
        with self._lock:
            self._connections += 1

    def request_opened(self, key: str | None) -> None:
        """A delivery's request arrived; a second one of the same key still open is an overlap."""
        with self._lock:
            self._open[key] = self._open.get(key, 0) + 1
            if key is not None and self._open[key] > 1:
                self._overlaps += 1

    def request_closed(self, key: str | None) -> None:
        with self._lock:
            if self._open.get(key):  # a reset while the request was open forgot it already
                self._open[key] -= 1

    def record(self, delivery: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
        """Store a delivery and decide its answer status (None means drop the connection)."""
        with self._lock:
            key = delivery["key"]  # deliveries without Idempotency-Key share the key None
            attempt = self._counts[key] = self._counts.get(key, 0) + 1
            b = dict(self._behaviour)
            if attempt <= b["fail_first"]:
                status: int | None = b["fail_status"]
            else:
                status = None if b["body"] == "close" else b["status"]
            if status is not None and 200 <= status < 300:
                self._accepted += 1
            self._deliveries.append({**delivery, "status": status})
            return status, b

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self._deliveries]

    def count_by_key(self) -> dict[str | None, int]:
        with self._lock:
            return dict(self._counts)

    def stats(self) -> dict[str, int]:
        with self._lock:
            received = len(self._deliveries)
            unique = len(self._counts)
            return {"received": received, "unique": unique, "duplicates": received - unique,
                    "accepted": self._accepted, "connections": self._connections,
                    "overlaps": self._overlaps}


class SignatureCheck:
    """Standard Webhooks verification with the package's own `verify()`; any of the secrets may match."""

    def __init__(self, secrets: str) -> None:
        self._webhooks = [Webhook(secret) for secret in secrets.split()]

    def valid(self, raw: bytes, headers: dict[str, str]) -> bool:
        for webhook in self._webhooks:
            try:
                webhook.verify(raw, headers, json_parse=False)
                return True
            except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature list
                continue
        return False
