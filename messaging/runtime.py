"""The connections one process uses, opened together at process start and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from psycopg_pool import ConnectionPool

from messaging import cache, db
from messaging.cache import Cache
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
            ),
            metrics=Recorder(client),
        )

    def close(self) -> None:
        self.webhook.close()
        self.redis.close()
        self.pool.close()
