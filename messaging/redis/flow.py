"""Flow control toward the provider, shared by every worker on every host through Redis.

One rate limit (GCRA) and one circuit breaker. Their state changes only inside the Lua scripts of
flow.lua, each atomic and timed by Redis's own clock, so workers on hosts with different clocks
agree on every transition, and exactly one of them makes it (and logs it).

What a send costs: nothing while the breaker is closed and healthy, nothing is paused and no
rate limit is set. The send's existing MGET reads keys.FLOW_CLEAR, which says so; successes are
then counted in the process and added to the shared window once a second. Otherwise a send
asks `admit` (one script call) and reports its answer back.

The breaker opens when at least BREAKER_MIN_CALLS deliveries in the window failed transiently
and they are at least BREAKER_FAILURE_RATIO of the window's deliveries. Until the window shows
the provider healthy (at start, after any failure, after a pause), every admission is counted
while its POST is under way, and no more are let through than could all fail without opening
the breaker: a provider down from the start costs at most BREAKER_MIN_CALLS attempts, whatever
the number of workers. Open, it lets nothing through for BREAKER_OPEN_SECONDS; then exactly one
probe goes (half-open): success closes it, failure reopens it for twice as long, up to
RETRY_MAX_SECONDS.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from uuid import UUID

import redis

from messaging.delivery.ports import Admission, Verdict
from messaging.errors import CacheUnavailable
from messaging.logs import fields
from messaging.redis import breaker, keys, scripts
from messaging.redis.client import wrap_errors
from messaging.settings import Settings

log = logging.getLogger(__name__)

SCRIPTS = "flow.lua"

# A send whose slot under the rate limit comes within this time waits for it in the task; a later
# slot sends the claim back to pending until then. Measured at 50/s with 3 workers: docs/flow-control.md.
HOLD_IN_TASK_SECONDS = 1.0
# Held because another call is deciding (the probe, or calls in flight while the breaker counts).
RECHECK_SECONDS = 1.0
# A counted admission (or a probe) whose answer never comes (its worker died) stops counting
# once its POST cannot be under way any more.
LEASE_MARGIN_SECONDS = 5.0
SUCCESS_FLUSH_SECONDS = 1.0
# A send that reaches its POST later than one interval after its slot, and at least this late, was
# stalled: its slot is given up. Sent that late, any second holds at most rate + burst (plus this
# time's worth of slots at rates above 50/s); the floor keeps a database update from counting as one.
LATE_SLOT_SECONDS = 0.02


@dataclass(frozen=True)
class Lease:
    """What an admission holds until its answer is recorded."""

    kind: str  # free (not counted), counted (in the in-flight set), probe (the half-open probe)
    token: str = ""
    slot: float = 0.0  # its slot under the rate limit, on time.monotonic()'s clock


FREE = Lease("free")


class RedisFlowControl:
    """`delivery.FlowControl` over Redis; one per process, shared by its threads."""

    def __init__(self, client: redis.Redis, settings: Settings, *, hold_in_task_seconds: float = HOLD_IN_TASK_SECONDS):
        self.client = client
        rate = settings.rate_limit_per_second
        self.emission = 1 / rate if rate else 0.0
        # GCRA's tolerance: up to RATE_LIMIT_BURST go at once, then one per emission interval.
        self.tolerance = (settings.rate_limit_burst - 1) * self.emission
        self.hold_in_task_seconds = hold_in_task_seconds
        self.lease_seconds = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        self.window_seconds = settings.breaker_window_seconds
        self.breaker = [settings.breaker_min_calls, settings.breaker_failure_ratio, self.window_seconds]
        self.first_open = settings.breaker_open_seconds
        self.longest_open = max(settings.retry_max_seconds, settings.breaker_open_seconds)
        self._admit = scripts.register(client, SCRIPTS, "prelude", "admit")
        self._record = scripts.register(client, SCRIPTS, "prelude", "open_and_close", "record")
        self._slot = scripts.register(client, SCRIPTS, "prelude", "slot")
        self._pause = scripts.register(client, SCRIPTS, "prelude", "pause")
        self._claimable = scripts.register(client, SCRIPTS, "prelude", "claimable")
        self._lock = threading.Lock()
        self._successes = 0
        self._flushed_at = time.monotonic()

    def admit(self, token: UUID, *, clear: bool) -> Admission:
        """May this claim be POSTed now? Yes also when its slot under the rate limit comes within
        HOLD_IN_TASK_SECONDS: `wait_for_slot` waits for it."""
        if clear and not self.emission:
            return Admission(go=True, lease=FREE)
        with wrap_errors():
            go, wait, reason, kind, transition = self._admit(
                keys=[keys.FLOW_BREAKER, keys.FLOW_CALLS, keys.FLOW_IN_FLIGHT, keys.FLOW_CLEAR, keys.FLOW_PAUSE, keys.FLOW_TAT, keys.METRICS_BREAKER],
                args=[
                    str(token), self.lease_seconds, *self.breaker,
                    self.emission, self.tolerance, self.hold_in_task_seconds, RECHECK_SECONDS,
                ],
            )
        if transition:
            log.info("event=breaker_half_open %s", fields(why="open time over: one probe delivery goes"))
        if not int(go):
            return Admission(go=False, wait_seconds=float(wait), reason=reason)
        return Admission(go=True, lease=Lease(kind, str(token), time.monotonic() + float(wait)))

    def wait_for_slot(self, admission: Admission) -> None:
        """Sleep until the admission's slot. A wait that overran its slot (the process stalled) gives
        it up and takes the next free one: sent late, it would reach the provider together with the
        slots after it, over the limit."""
        lease = admission.lease if isinstance(admission.lease, Lease) else FREE
        slot = lease.slot
        late = max(self.emission, LATE_SLOT_SECONDS)
        while self.emission:
            remaining = slot - time.monotonic()  # read once: a second reading may already be past the slot
            if remaining > 0:
                time.sleep(remaining)
            if time.monotonic() - slot <= late:
                return
            try:
                with wrap_errors():
                    wait = float(self._slot(keys=[keys.FLOW_TAT], args=[self.emission, self.tolerance]))
            except CacheUnavailable:
                return  # the send was admitted; Redis gone since changes nothing to that
            slot = time.monotonic() + wait

    def record(self, admission: Admission, verdict: Verdict, *, why: str = "") -> None:
        """Count an answer toward the breaker; never fails (a lost count only delays it)."""
        lease = admission.lease if isinstance(admission.lease, Lease) else FREE
        if lease.kind == "free" and verdict is not Verdict.FAILING:
            if verdict is Verdict.HEALTHY:
                self._count_success()
            return
        self._run_record(verdict.value, lease, self._take_successes(), why)

    def _count_success(self) -> None:
        """Healthy and free: counted here, added to the window once a second rather than per send."""
        with self._lock:
            self._successes += 1
            if time.monotonic() - self._flushed_at < SUCCESS_FLUSH_SECONDS:
                return
        self._run_record(Verdict.NEITHER.value, FREE, self._take_successes(), "")

    def _take_successes(self) -> int:
        with self._lock:
            taken, self._successes = self._successes, 0
            self._flushed_at = time.monotonic()
            return taken

    def _run_record(self, verdict: str, lease: Lease, successes: int, why: str) -> None:
        try:
            transition, reason, seconds = self._record(
                keys=[keys.FLOW_BREAKER, keys.FLOW_CALLS, keys.FLOW_IN_FLIGHT, keys.FLOW_CLEAR, keys.METRICS_BREAKER],
                args=[
                    verdict, lease.kind, lease.token, successes, *self.breaker,
                    self.first_open, self.longest_open, why,
                ],
            )
        except redis.RedisError as error:
            log.debug("breaker outcome not recorded: %s", error)
            return
        if transition == "opened":
            log.warning("event=breaker_opened %s", fields(open_seconds=f"{float(seconds):g}", why=reason))
        elif transition == "closed":
            log.info("event=breaker_closed %s", fields(why=reason))

    def pause(self, seconds: float, why: str) -> None:
        """Every worker holds its sends for `seconds` (a provider's 429 Retry-After); logged when it begins."""
        try:
            ends = self._pause(keys=[keys.FLOW_PAUSE, keys.FLOW_CLEAR], args=[seconds, why])
        except redis.RedisError as error:
            log.debug("pause not recorded: %s", error)
            return
        if ends:
            log.warning("event=provider_pause %s", fields(seconds=f"{seconds:g}", until=_iso(ends), why=why))

    def claimable(self, limit: int, horizon_seconds: float) -> int:
        """How many a batch may claim: with a rate limit, the slots up to the next batch plus the wait
        a task may take, so that sends waiting for their slots carry the limit through a late batch."""
        horizon = horizon_seconds + self.hold_in_task_seconds
        with wrap_errors():
            return int(
                self._claimable(
                    keys=[keys.FLOW_BREAKER, keys.FLOW_PAUSE, keys.FLOW_TAT, keys.FLOW_CLAIMED], args=[limit, horizon, self.emission, self.tolerance]
                )
            )


def _iso(epoch: str) -> str:
    moment = breaker.moment(epoch)
    return moment.isoformat() if moment else ""
