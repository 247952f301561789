"""The delivery cache: a worker that POSTed a message remembers it here before PostgreSQL records it.

The next claim of the same message finds the entry and records it as sent instead of POSTing
it again; the API shows it before PostgreSQL has it. An entry is JSON
`{"messageId": <the provider's id or null>, "sent_at": <ISO 8601, UTC>}`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from uuid import UUID

import redis

from messaging.delivery.ports import CachedDelivery
from messaging.redis import keys
from messaging.redis.client import wrap_errors


class DeliveryCache:
    """The entries, each kept for CACHE_TTL_SECONDS."""

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds

    def remember(self, message_id: UUID, delivery: CachedDelivery, pipe: redis.client.Pipeline | None = None) -> None:
        """Cache a delivery; given a pipeline, only add the command to it."""
        entry = json.dumps({"messageId": delivery.webhook_message_id, "sent_at": delivery.sent_at.isoformat()})
        if pipe is not None:
            pipe.set(keys.sent(message_id), entry, ex=self.ttl_seconds)
            return
        with wrap_errors():
            self.client.set(keys.sent(message_id), entry, ex=self.ttl_seconds)

    def get(self, message_id: UUID) -> CachedDelivery | None:
        """The cached delivery of a message, if any."""
        with wrap_errors():
            return parse(self.client.get(keys.sent(message_id)))


    def get_many(self, message_ids: list[UUID]) -> dict[UUID, CachedDelivery]:
        """The cached deliveries of these messages, those that have one, in one round trip."""
        with wrap_errors():
            entries = self.client.mget([keys.sent(message_id) for message_id in message_ids])
        found = {message_id: parse(entry) for message_id, entry in zip(message_ids, entries)}
        return {message_id: delivery for message_id, delivery in found.items() if delivery is not None}


def parse(raw: str | None) -> CachedDelivery | None:
    """An entry as written by `remember`; None when there is none or it is not a JSON object.

    The entry says the message was delivered, which is what matters. A `sent_at` or `messageId`
    it holds that cannot be read (written by hand, say) is None: PostgreSQL's value stands for it,
    the time it records then or the one it has. A time without a zone is UTC, as the workers write it.
    """
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    message_id = entry.get("messageId")
    return CachedDelivery(_time(entry.get("sent_at")), _text(message_id))


def _time(value: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
