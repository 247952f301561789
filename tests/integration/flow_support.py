"""What the flow-control tests share: admissions made as workers make them, and counted round trips."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import redis

from messaging.delivery.ports import Admission, Verdict
from messaging.redis.breaker import Breaker
from messaging.redis.flow import RedisFlowControl


def admit(control: RedisFlowControl, clear: bool = False) -> Admission:
    return control.admit(uuid.uuid4(), clear=clear)


def admit_together(control: RedisFlowControl, count: int) -> list[Admission]:
    """`count` admissions at the same moment, as many workers would ask."""
    start = threading.Barrier(count)

    def one(_: int) -> Admission:
        start.wait()
        return admit(control)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def open_breaker(control: RedisFlowControl) -> None:
    for admission in [admit(control) for _ in range(5)]:
        control.record(admission, Verdict.FAILING, why="HTTP 503")
    assert Breaker(control.client).status().state == "open"


def make_healthy(control: RedisFlowControl) -> Admission:
    """Successes until the window shows the provider healthy; the first admission that is not counted."""
    for _ in range(10):
        admission = admit(control)
        if admission.lease.kind == "free":
            return admission
        control.record(admission, Verdict.HEALTHY)
    raise AssertionError("ten successes and still counted")


def transitions(caplog, event: str) -> int:
    return sum(f"event={event}" in record.getMessage() for record in caplog.records)


class CountingClient(redis.Redis):
    """Counts round trips: commands sent alone and pipelines."""

    round_trips = 0

    def execute_command(self, *args, **options):
        CountingClient.round_trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, *args, **kwargs):
        pipe = super().pipeline(*args, **kwargs)
        run = pipe.execute

        def execute(*a, **k):
            CountingClient.round_trips += 1
            return run(*a, **k)

        pipe.execute = execute
        return pipe
