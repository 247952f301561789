"""The delivery rules' `SharedState` port over Redis: the switch, the delivery cache and the counters."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from messaging.delivery.ports import CachedDelivery, Preflight
from messaging.redis import delivery_cache, keys
from messaging.redis.client import wrap_errors
from messaging.redis.counters import Counters
from messaging.redis.delivery_cache import DeliveryCache
from messaging.redis.switch import Switch


@dataclass(frozen=True)
class RedisSharedState:
    switch: Switch
    cache: DeliveryCache
    counters: Counters

    def is_enabled(self) -> bool:
        return self.switch.is_enabled()

    def preflight(self, message_id: UUID) -> Preflight:
        """The switch, the message's cached delivery and whether flow control must be asked, in one MGET."""
        with wrap_errors():
            switch, entry, clear = self.switch.client.mget(keys.ENABLED, keys.sent(message_id), keys.FLOW_CLEAR)
        return Preflight(self.switch.read(switch), delivery_cache.parse(entry), flow_clear=clear is not None)

    def remember_sent(self, message_id: UUID, delivery: CachedDelivery, webhook_seconds: float) -> None:
        """The cache entry and the delivery's counters in one round trip."""
        pipe = self.cache.client.pipeline(transaction=False)
        self.cache.remember(message_id, delivery, pipe=pipe)
        self.counters.delivery("sent", webhook_seconds, pipe=pipe)
        with wrap_errors():
            pipe.execute()

    def cached_deliveries(self, message_ids: list[UUID]) -> dict[UUID, CachedDelivery]:
        return self.cache.get_many(message_ids)

    def count_delivery(self, outcome: str, webhook_seconds: float | None) -> None:
        self.counters.delivery(outcome, webhook_seconds)

    def count_batch(self, claimed: int, recovered: int) -> None:
        self.counters.batch(claimed, recovered)
