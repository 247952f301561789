"""The connections one process uses, opened together at process start and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import redis
from psycopg_pool import ConnectionPool

from messaging import cache, db, flow, store
from messaging.cache import Cache
from messaging.delivery import CachedDelivery, Ports, Preflight
from messaging.flow import RedisFlowControl
from messaging.metrics import Recorder
from messaging.settings import Settings
from messaging.webhook import WebhookClient


def database_pool_size(concurrency: int) -> int:
    """Connections are held only around statements, never during a POST, so a handful serve many senders."""
    return min(max(concurrency, 2), 16)


@dataclass
class Runtime:
    settings: Settings
    pool: ConnectionPool
    redis: redis.Redis
    cache: Cache
    webhook: WebhookClient
    metrics: Recorder
    flow: RedisFlowControl

    @classmethod
    def open(cls, settings: Settings, *, concurrency: int = 4, name: str = "messaging") -> Runtime:
        """Connect lazily: nothing here fails while PostgreSQL or Redis is still down."""
        client = cache.create_client(settings.redis_url)
        return cls(
            settings=settings,
            pool=db.create_pool(settings.database_url, max_size=database_pool_size(concurrency), name=name),
            redis=client,
            cache=Cache(client, settings.cache_ttl_seconds, settings.auto_start),
            webhook=WebhookClient(
                settings.webhook_url,
                settings.webhook_auth_key,
                settings.webhook_timeout_seconds,
                pool_size=concurrency,
                signing_secrets=settings.webhook_signing_secrets,
            ),
            metrics=Recorder(client),
            flow=RedisFlowControl(client, settings),
        )

    @cached_property
    def ports(self) -> Ports:
        """What the delivery rules talk to, over this process's connections."""
        return Ports(
            self.settings, store.Records(self.pool), RedisLedger(self.cache, self.metrics), self.webhook, self.flow
        )

    def close(self) -> None:
        self.webhook.close()
        self.redis.close()
        self.pool.close()


@dataclass(frozen=True)
class RedisLedger:
    """`delivery.Ledger` over Redis: the switch and delivery cache (Cache) and the shared counters (Recorder)."""

    cache: Cache
    metrics: Recorder

    def is_enabled(self) -> bool:
        return self.cache.is_enabled()

    def preflight(self, message_id: UUID) -> Preflight:
        enabled, entry, (clear,) = self.cache.switch_and_delivery(message_id, flow.CLEAR_KEY)
        return Preflight(enabled, _cached_delivery(entry), flow_clear=clear is not None)

    def remember_sent(self, message_id: UUID, delivery: CachedDelivery, webhook_seconds: float) -> None:
        """The cache entry and the delivery's counters in one round trip."""
        pipe = self.cache.client.pipeline(transaction=False)
        self.cache.remember_sent(message_id, delivery.webhook_message_id, delivery.sent_at, pipe=pipe)
        self.metrics.delivery("sent", webhook_seconds, pipe=pipe)
        with cache.wrap_errors():
            pipe.execute()

    def count_delivery(self, outcome: str, webhook_seconds: float | None) -> None:
        self.metrics.delivery(outcome, webhook_seconds)

    def count_batch(self, claimed: int, recovered: int) -> None:
        self.metrics.batch(claimed, recovered)


def _cached_delivery(entry: dict[str, Any] | None) -> CachedDelivery | None:
    if entry is None:
        return None
    try:
        sent_at = datetime.fromisoformat(str(entry.get("sent_at")))
    except ValueError:
        sent_at = datetime.now(timezone.utc)
    message_id = entry.get("messageId")
    return CachedDelivery(sent_at, message_id if isinstance(message_id, str) else None)
