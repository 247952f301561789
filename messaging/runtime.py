"""The connections of one process, opened together at process start and closed at shutdown.

A worker opens everything the delivery rules talk to (`Runtime`); the API only what its calls
use (`ApiRuntime`): no webhook client, no flow control scripts. Both connect lazily, so
nothing here fails while PostgreSQL or Redis is still down.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import redis
from psycopg_pool import ConnectionPool

from messaging.delivery.ports import Ports
from messaging.errors import SettingsError
from messaging.postgres import pool as postgres_pool
from messaging.ops import callbacks
from messaging.postgres.events import EventRecords
from messaging.postgres.receipts import ReceiptRecords
from messaging.postgres.records import Records
from messaging.provider.webhook import WebhookClient
from messaging.redis.breaker import Breaker
from messaging.redis import client as redis_client
from messaging.redis.counters import Counters
from messaging.redis.delivery_cache import DeliveryCache
from messaging.redis.flow import RedisFlowControl
from messaging.redis.shared_counts import ListTotals, Remembered, StatusCounts
from messaging.redis.shared_state import RedisSharedState
from messaging.redis.switch import Switch
from messaging.sentinel_urls import uses_sentinels
from messaging.settings import Settings


@dataclass
class Connections:
    """The PostgreSQL pool and the Redis client every process has, and what reads through them."""

    settings: Settings
    pool: ConnectionPool
    redis: redis.Redis

    @classmethod
    def _connect(cls, settings: Settings, concurrency: int, name: str) -> dict:
        # Each finds its primary replaced by itself; the count is kept in Redis, beside the other counters.
        client = redis_client.connect(settings, on_failover=lambda: Counters(client).failover("redis"))
        pool = postgres_pool.create_pool(
            settings.database_url,
            max_size=postgres_pool.pool_size(concurrency),
            name=name,
            on_failover=lambda: Counters(client).failover("postgresql"),
        )
        return dict(settings=settings, pool=pool, redis=client)

    @cached_property
    def records(self) -> Records:
        return Records(self.pool, receipts=self.settings.receipts_enabled, callbacks=self.settings.status_callbacks)

    @cached_property
    def receipts(self) -> ReceiptRecords:
        return ReceiptRecords(self.pool, callbacks=self.settings.status_callbacks)

    @cached_property
    def events(self) -> EventRecords:
        return EventRecords(self.pool)

    @cached_property
    def switch(self) -> Switch:
        return Switch(self.redis, self.settings.auto_start, replicated=uses_sentinels(self.settings.redis_url))

    @cached_property
    def cache(self) -> DeliveryCache:
        return DeliveryCache(self.redis, self.settings.cache_ttl_seconds)

    @cached_property
    def counters(self) -> Counters:
        return Counters(self.redis)

    def close(self) -> None:
        self.redis.close()
        self.pool.close()


@dataclass
class Runtime(Connections):
    """A worker's connections: everything the delivery rules talk to."""

    provider: WebhookClient
    flow: RedisFlowControl
    concurrency: int = 4

    @classmethod
    def open(cls, settings: Settings, *, concurrency: int = 4, name: str = "messaging") -> Runtime:
        connected = cls._connect(settings, concurrency, name)
        return cls(
            **connected,
            provider=WebhookClient(
                settings.webhook_url,
                settings.webhook_auth_key,
                settings.webhook_timeout_seconds,
                pool_size=concurrency,
                signing_secrets=settings.webhook_signing_secrets,
            ),
            flow=RedisFlowControl(connected["redis"], settings),
            concurrency=concurrency,
        )

    @cached_property
    def ports(self) -> Ports:
        """What the delivery rules talk to, over this process's connections."""
        shared = RedisSharedState(self.switch, self.cache, self.counters)
        return Ports(self.settings, self.records, shared, self.provider, self.flow)

    @cached_property
    def callback_slots(self) -> threading.BoundedSemaphore:
        """How many batches of status callbacks this process POSTs at once: a few of its threads, never all."""
        return callbacks.slots(self.concurrency)

    @cached_property
    def callback_client(self) -> WebhookClient:
        """The client that POSTs status callbacks, made on first use (a worker with callbacks off has none)."""
        settings = self.settings
        if not settings.status_callback_url:
            raise SettingsError("STATUS_CALLBACK_URL", "must be set on the workers while status callbacks are on")
        return WebhookClient(
            settings.status_callback_url,
            "",
            settings.status_callback_timeout_seconds,
            pool_size=callbacks.slot_count(self.concurrency),
            signing_secrets=settings.status_callback_signing_secrets,
        )

    def close(self) -> None:
        self.provider.close()
        if "callback_client" in self.__dict__:
            self.callback_client.close()
        super().close()


@dataclass
class ApiRuntime(Connections):
    """The API's connections: the records, the switch, the shared counts and the breaker's state."""

    @classmethod
    def open(cls, settings: Settings, *, concurrency: int = 8, name: str = "api") -> ApiRuntime:
        return cls(**cls._connect(settings, concurrency, name))

    @cached_property
    def remembered(self) -> Remembered:
        return Remembered(self.redis)

    @cached_property
    def counts(self) -> StatusCounts:
        return StatusCounts(self.records, self.remembered)

    @cached_property
    def totals(self) -> ListTotals:
        return ListTotals(self.records, self.remembered)

    @cached_property
    def breaker(self) -> Breaker:
        return Breaker(self.redis)
